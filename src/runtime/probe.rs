//! The overlay probe's process: whether kernel overlayfs can be mounted here (in rbox's user
//! namespace, on the store's filesystem), found by mounting a tiny overlay in a forked child
//! with a mount namespace of its own. Run by `rbox run`/`create` (which are already inside
//! the user namespace, and consult the store's memo first) and by `rbox info` (which is not,
//! and always probes for real; the child enters the namespace itself).
//!
//! The storage side (the scratch directories, the mount itself, the memo) is
//! `rbox_storage::mount::overlay`'s; this file only owns the child process.

use std::fs;
use std::io::{Read, Write};

use nix::unistd::ForkResult;
use rbox_storage::Store;

use super::{sys, userns};

/// Whether overlay can be mounted: the store's memo for this kernel, else a probe (whose
/// answer is remembered). The caller is inside rbox's user namespace.
pub fn overlay_works(store: &Store) -> bool {
    if let Some(works) = store.overlay_probe_answer() {
        tracing::debug!(
            "overlay probe remembered: {}",
            if works { "ok" } else { "no" }
        );
        return works;
    }
    let res = probe_and_record(store, &userns::current_mode());
    match &res {
        Ok(()) => tracing::debug!("overlay probe: ok"),
        Err(e) => tracing::debug!("overlay probe: {e}"),
    }
    res.is_ok()
}

/// Probes for real (whatever the memo says) and records the answer. `mode` is how the child
/// enters rbox's user namespace when the caller is not inside it yet. The error says why
/// overlay cannot be mounted, in one line.
pub fn probe_and_record(store: &Store, mode: &userns::Mode) -> Result<(), String> {
    let res = probe(store, mode);
    // a memo that cannot be written costs the next run another probe, nothing more
    let _ = store.record_overlay_probe(res.is_ok());
    res
}

fn probe(store: &Store, mode: &userns::Mode) -> Result<(), String> {
    let scratch = store.overlay_probe_scratch().map_err(|e| e.to_string())?;
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("create pipe: {e}"))?;
    // Both callers are single-threaded here: nothing they started before runs threads.
    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(r);
            let res = (|| -> Result<(), String> {
                userns::enter_mode(mode).map_err(|e| format!("{e:#}"))?;
                sys::private_mount_namespace().map_err(|e| format!("{e:#}"))?;
                scratch.mount().map_err(|e| e.to_string())
            })();
            let code = match res {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = fs::File::from(w).write_all(msg.as_bytes());
                    1
                }
            };
            // never returns, so the child's copy of `scratch` is not dropped (the parent
            // removes the directories)
            sys::exit_now(code);
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = fs::File::from(r).read_to_string(&mut msg);
            let res = match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(_) if !msg.is_empty() => Err(msg),
                Ok(st) => Err(format!("probe ended with {st:?}")),
                Err(e) => Err(format!("wait for the probe: {e}")),
            };
            drop(scratch);
            res
        }
    }
}
