//! Where rbox keeps things: the durable store (`--root`, else `$XDG_DATA_HOME/rbox`) and the
//! volatile runtime directory (`--runroot`, else `$XDG_RUNTIME_DIR/rbox` when that directory is
//! usable, else a private per-uid directory under /tmp, as on HPC nodes and after `su`).
//! Nothing here creates namespaces or takes locks.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::GlobalArgs;

/// The durable storage root. Does not create it.
pub fn storage_root(g: &GlobalArgs) -> Result<PathBuf> {
    if let Some(r) = &g.root {
        return Ok(absolute(r));
    }
    match dirs::data_dir() {
        Some(d) => Ok(d.join("rbox")),
        None => bail!("find the storage directory: set $HOME or $XDG_DATA_HOME, or pass --root"),
    }
}

/// The volatile runtime directory, created 0700 if missing.
pub fn runtime_dir(g: &GlobalArgs) -> Result<PathBuf> {
    // inside rbox's user namespace we are uid 0, but the directory is the caller's
    let uid = crate::runtime::userns::host_uid();
    let me = nix::unistd::geteuid().as_raw();
    let dir = if let Some(r) = &g.runroot {
        absolute(r)
    } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if usable_runtime_dir(&x, me) {
            x.join("rbox")
        } else {
            fallback_runtime_dir(uid)
        }
    } else {
        fallback_runtime_dir(uid)
    };
    ensure_private_dir(&dir, me)?;
    Ok(dir)
}

/// `$XDG_RUNTIME_DIR` counts only when it exists, belongs to us and is 0700: after `su` or on
/// a cluster node it often names another user's directory or nothing at all.
fn usable_runtime_dir(p: &Path, uid: u32) -> bool {
    match fs::metadata(p) {
        Ok(m) => m.is_dir() && m.uid() == uid && m.mode() & 0o777 == 0o700,
        Err(_) => false,
    }
}

fn fallback_runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/rbox-run-{uid}"))
}

/// Create `dir` (mode 0700) if needed and check that nobody else owns it: a directory under
/// /tmp that another user made first must not be trusted.
fn ensure_private_dir(dir: &Path, uid: u32) -> Result<()> {
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        bail!("create runtime directory `{}`: {e}", dir.display());
    }
    let m = fs::symlink_metadata(dir).with_context(|| format!("stat `{}`", dir.display()))?;
    if !m.is_dir() || m.uid() != uid {
        bail!(
            "runtime directory `{}` is not a directory owned by uid {uid}: remove it or pass --runroot",
            dir.display()
        );
    }
    if m.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 `{}`", dir.display()))?;
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// This boot's id: volatile state stamped with another boot's id is stale.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
