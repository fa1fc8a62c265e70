//! Where rbox keeps things: the durable store (`--root`, else `$XDG_DATA_HOME/rbox`) and the
//! volatile runtime directory (`--runroot`, else `$XDG_RUNTIME_DIR/rbox` when that directory is
//! usable, else a private per-uid directory under /tmp, as on HPC nodes and after `su`, and
//! `run/` in the store when another user took that name first). Both are 0700.
//! These are functions of the option values alone; the invocation's [`crate::context::Context`]
//! calls them and keeps the runtime directory it decided. Nothing here creates namespaces or
//! takes locks.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The durable storage root: `--root` (made absolute; its `rbox/` when it is Podman's own
/// store, see [`crate::config::own_root`]), else `$XDG_DATA_HOME/rbox`. Does not create it.
pub fn storage_root(root: Option<&Path>) -> Result<PathBuf> {
    if let Some(r) = root {
        return Ok(crate::config::own_root(&absolute(r)));
    }
    match dirs::data_dir() {
        Some(d) => Ok(d.join("rbox")),
        None => bail!("find the storage directory: set $HOME or $XDG_DATA_HOME, or pass --root"),
    }
}

/// Decide the volatile runtime directory from `--runroot` and `--root` (for the fallback in
/// the store), creating it 0700 if missing. The caller keeps the decision for the whole
/// invocation ([`crate::context::Context::runtime_dir`]).
pub fn choose_runtime_dir(runroot: Option<&Path>, root: Option<&Path>) -> Result<PathBuf> {
    // inside rbox's user namespace we are uid 0, but the directory is the caller's
    let uid = crate::runtime::userns::host_uid();
    let me = nix::unistd::geteuid().as_raw();
    let chosen = match (runroot, std::env::var_os("XDG_RUNTIME_DIR")) {
        (Some(r), _) => Some(absolute(r)),
        (None, Some(x)) if usable_runtime_dir(Path::new(&x), me) => {
            Some(absolute(&Path::new(&x).join("rbox")))
        }
        _ => None,
    };
    if let Some(dir) = chosen {
        // the user's own choice: create it, and close it if it is open to others
        create_all_private(&dir)?;
        match check_dir(&dir, me) {
            Ok(()) => {}
            Err(Unfit::Open(f, _)) => f
                .set_permissions(fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 0700 `{}`", dir.display()))?,
            Err(why) => bail!(
                "runtime directory `{}` {why}: remove it or pass another --runroot",
                dir.display()
            ),
        }
        return Ok(dir);
    }
    // The shared /tmp fallback: anyone may have made this name first (a symlink to their own
    // directory, a directory of theirs). Such a directory is never used nor changed; our
    // state goes to a private directory in the store instead, so another user can neither
    // read it nor keep us from running containers.
    let tmp = fallback_runtime_dir(uid);
    match fs::DirBuilder::new().mode(0o700).create(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(_) => return store_runtime_dir(root),
    }
    match check_dir(&tmp, me) {
        Ok(()) => Ok(tmp),
        Err(_) => store_runtime_dir(root),
    }
}

/// `run/` in the store (0700 like the store itself): where the volatile state goes when
/// /tmp/rbox-run-UID is not ours.
fn store_runtime_dir(root: Option<&Path>) -> Result<PathBuf> {
    let dir = crate::layout::store_runtime_dir(&storage_root(root)?);
    create_all_private(&dir)?;
    let me = nix::unistd::geteuid().as_raw();
    match check_dir(&dir, me) {
        Ok(()) => Ok(dir),
        Err(why) => bail!(
            "runtime directory `{}` {why}: remove it or pass --runroot",
            dir.display()
        ),
    }
}

fn create_all_private(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create runtime directory `{}`", dir.display()))
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

/// Why a directory may not hold our volatile state.
#[derive(Debug)]
enum Unfit {
    /// a symbolic link (never followed)
    Symlink,
    /// not a directory, or not one we can open
    NotDir(std::io::Error),
    /// another uid owns it
    Foreign(u32),
    /// ours, but group or other users have access (the open directory, to fix it by fd)
    Open(fs::File, u32),
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::Symlink => write!(f, "is a symbolic link"),
            Unfit::NotDir(e) => write!(f, "is not a directory we can open: {e}"),
            Unfit::Foreign(o) => write!(f, "belongs to uid {o}"),
            Unfit::Open(_, m) => write!(f, "is open to other users (mode {m:04o})"),
        }
    }
}

/// The verdict on a directory's owner and mode bits, for the caller `uid`.
fn judge(owner: u32, mode: u32, uid: u32) -> Result<(), Option<u32>> {
    if owner != uid {
        return Err(None);
    }
    if mode & 0o077 != 0 {
        return Err(Some(mode & 0o7777));
    }
    Ok(())
}

/// Whether `dir` is a directory, not a symlink, owned by `uid` and closed to everyone else.
/// Opened with O_NOFOLLOW and judged by fstat on that descriptor, so a symlink swapped in
/// between the look and the use is never followed.
fn check_dir(dir: &Path, uid: u32) -> Result<(), Unfit> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => Unfit::Symlink,
            _ => Unfit::NotDir(e),
        })?;
    let m = f.metadata().map_err(Unfit::NotDir)?;
    match judge(m.uid(), m.mode(), uid) {
        Ok(()) => Ok(()),
        Err(None) => Err(Unfit::Foreign(m.uid())),
        Err(Some(mode)) => Err(Unfit::Open(f, mode)),
    }
}

/// Whether `dir` may be trusted to hold the caller's volatile state (for a runtime directory
/// named in a container record): ours, private, not a symlink.
pub fn is_private_dir(dir: &Path) -> bool {
    check_dir(dir, nix::unistd::geteuid().as_raw()).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_directory_of_ours_is_trusted() {
        assert_eq!(judge(1000, 0o40700, 1000), Ok(()));
        assert_eq!(judge(1000, 0o40755, 1000), Err(Some(0o755)));
        assert_eq!(judge(1000, 0o41777, 1000), Err(Some(0o1777)));
        assert_eq!(judge(0, 0o40700, 1000), Err(None));
        assert_eq!(judge(1001, 0o40700, 1000), Err(None));
    }

    #[test]
    fn symlinks_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let real = d.path().join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        assert!(check_dir(&real, me).is_ok());
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = check_dir(&link, me).unwrap_err();
        assert!(matches!(e, Unfit::Symlink), "{e}");
        assert_eq!(e.to_string(), "is a symbolic link");
        fs::write(d.path().join("file"), "").unwrap();
        assert!(check_dir(&d.path().join("file"), me).is_err());
        assert!(matches!(check_dir(&real, me + 1), Err(Unfit::Foreign(_))));
    }
}
