//! The user's Ctrl-C inside long store operations: a process-wide stop request that the
//! byte streams of the store (a pulled or loaded layer read and unpacked, a layer tar
//! written and compressed, a blob written, an archive saved) check as bytes pass, so an
//! operation on a large layer ends within a few milliseconds instead of running to its end.
//! The operation then fails like any other: its `tmp/` staging is removed by its guards
//! and nothing half-written reaches `blobs/`, `layers/` or `images/`; what it had finished
//! and verified before (a content-addressed blob or layer of a multi-layer pull) stays,
//! as after a killed rbox, and the next pull of the image reuses it.
//!
//! It does not own the signals: the binary asks for the stop ([`request`], from its
//! signal handler) or holds SIGINT, SIGTERM and SIGHUP blocked (a build, which stops
//! between steps); a held one that a stream sees waiting counts as a request too.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// How often a stream looks for a held signal (a system call), at most: bounds both the
/// cost on a fast stream and the delay before a Ctrl-C is seen.
const PENDING_EVERY: Duration = Duration::from_millis(20);

/// Asks every store operation of this process to stop at its next check. Only an atomic
/// store, so a signal handler may call it.
pub fn request() {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Installs what [`wake`] needs: a signal handler that does nothing (see `sys`). The binary
/// calls it with its own handlers for the stop signals.
pub fn catch_wake_signal() -> io::Result<()> {
    crate::sys::catch_wake_signal()
}

/// This thread's id, for [`wake`].
pub fn thread_id() -> i32 {
    crate::sys::gettid()
}

/// Interrupts the blocking system call of each thread `tids` names (a read from a stalled
/// registry), so that its stream looks at the stop request. A process-wide signal reaches
/// one thread only (the main one, as a rule, while it waits for the others); called by the
/// thread that got it, once a stop was asked for.
pub fn wake(tids: &[i32]) {
    for &t in tids {
        crate::sys::wake_thread(t);
    }
}

/// Whether a stop was asked for: by [`request`], or by a held SIGINT, SIGTERM or SIGHUP
/// that a stream of the store saw waiting and stopped for (the signal stays pending for
/// whoever blocked it). Only an atomic load: the binary asks after any failure, and a
/// signal held by a command that is not stopping for it (one it relays to a container)
/// does not count.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// The error a stream returns once a stop was asked for. Not `ErrorKind::Interrupted`,
/// which `io::copy` and readers retry.
pub fn error() -> io::Error {
    io::Error::other("interrupted")
}

/// A reader or writer that fails with [`error`] once a stop was asked for: the flag at every
/// call, a held signal at most every [`PENDING_EVERY`].
pub(crate) struct Checked<T> {
    inner: T,
    next_look: Instant,
    /// [`REQUESTED`] but in unit tests, which must not stop the other tests of the process
    flag: &'static AtomicBool,
}

impl<T> Checked<T> {
    pub(crate) fn new(inner: T) -> Self {
        Checked {
            inner,
            next_look: Instant::now(),
            flag: &REQUESTED,
        }
    }

    pub(crate) fn into_inner(self) -> T {
        self.inner
    }

    fn check(&mut self) -> io::Result<()> {
        if self.flag.load(Ordering::Relaxed) {
            return Err(error());
        }
        let now = Instant::now();
        if now >= self.next_look {
            self.next_look = now + PENDING_EVERY;
            if crate::sys::stop_signal_pending() {
                self.flag.store(true, Ordering::Relaxed);
                return Err(error());
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.read(buf)
    }
}

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A flag of its own: the process-wide one would stop the other tests of this binary.
    #[test]
    fn streams_fail_once_a_stop_is_requested() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let mut r = Checked::new(&b"abc"[..]);
        r.flag = &FLAG;
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        let mut w = Checked::new(Vec::new());
        w.flag = &FLAG;
        w.write_all(b"x").unwrap();
        FLAG.store(true, Ordering::Relaxed);
        let e = r.read(&mut buf).unwrap_err();
        // not a kind that `io::copy` would retry forever
        assert_ne!(e.kind(), io::ErrorKind::Interrupted);
        assert_eq!(e.to_string(), "interrupted");
        assert!(w.write(b"y").is_err());
        assert_eq!(w.into_inner(), b"x");
    }
}
