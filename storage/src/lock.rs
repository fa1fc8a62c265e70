//! Advisory file locks (flock) under `locks/`: one per layer, per image, per name, and the
//! layer pins (`pin-<hex>`, held shared by a process that unpacked a layer it has not yet
//! committed into an image record, so a concurrent removal does not collect it).
//!
//! A lock is held for as long as the returned guard lives. Lock files are never deleted
//! (deleting a lock file while another process waits on it would split the lock in two).

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::{bt, Error, Result};

/// A held flock; released on drop.
pub struct LockGuard {
    _lock: Flock<File>,
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("open lock {}", bt(path)), e))
}

fn take(path: &Path, arg: FlockArg) -> Result<LockGuard> {
    let f = open(path)?;
    let lock =
        Flock::lock(f, arg).map_err(|(_, e)| Error::io(format!("lock {}", bt(path)), e.into()))?;
    Ok(LockGuard { _lock: lock })
}

/// Waits for an exclusive lock on `path`.
pub fn exclusive(path: &Path) -> Result<LockGuard> {
    take(path, FlockArg::LockExclusive)
}

/// Waits for a shared lock on `path`.
pub fn shared(path: &Path) -> Result<LockGuard> {
    take(path, FlockArg::LockShared)
}

/// Takes an exclusive lock on `path` only if nobody holds it; `None` when someone does.
pub fn try_exclusive(path: &Path) -> Result<Option<LockGuard>> {
    let f = open(path)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(LockGuard { _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(format!("lock {}", bt(path)), e.into())),
    }
}
