//! A host directory as a container's root (`rbox run --rootfs DIR`), overlaid so that the
//! directory is never written: the container's `upper/` and `work/` above it, as for an
//! image.
//!
//! One overlay of the whole directory where the kernel allows it. Inside a user namespace it
//! does not for a directory with mounts below it that the namespace may not uncover (the
//! host's `/`, with `/proc`, `/sys`, `/dev` and more): overlayfs takes a private copy of each
//! lower mount, and the kernel refuses a copy that would reveal what those locked mounts
//! cover. Then the root is assembled per top-level entry instead: `upper/` itself is bound as
//! the root (new top-level entries land there), each top-level directory gets an overlay of
//! its own with `upper/NAME` above it (where a whole overlay would have put those changes
//! too), and top-level symlinks (`/lib -> usr/lib`) are recreated. A directory that cannot be
//! overlaid either (it has locked mounts below it: `/proc`, `/dev`, `/run`) stays an empty
//! directory; the container mounts its own `/proc`, `/dev` and `/sys` over them anyway.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount as mount2, MsFlags};

use super::overlay;
use crate::{bt, Error, IoContext, Result};

/// Mounts host directory `dir` at `target`, overlaid with `upper`/`work`.
pub fn mount(dir: &Path, upper: &Path, work: &Path, volatile: bool, target: &Path) -> Result<()> {
    let whole = overlay::mount(&[dir.to_path_buf()], upper, work, volatile, target);
    let Err(first) = whole else {
        return Ok(());
    };
    // the whole overlay is refused (EINVAL) when `dir` has locked mounts below it
    mount2(
        Some(upper),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            format!("bind {} at {} ({first})", bt(upper), bt(target)),
            e.into(),
        )
    })?;
    let entries = fs::read_dir(dir).ctx(|| format!("read {}", bt(dir)))?;
    for ent in entries {
        let ent = ent.ctx(|| format!("read {}", bt(dir)))?;
        let name = ent.file_name();
        let src = dir.join(&name);
        let at = upper.join(&name);
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.file_type().is_symlink() {
            if fs::symlink_metadata(&at).is_err() {
                let to = fs::read_link(&src).ctx(|| format!("read link {}", bt(&src)))?;
                symlink(&to, &at).ctx(|| format!("create {}", bt(&at)))?;
            }
        } else if meta.is_dir() {
            // (not `work/NAME`: a whole overlay once mounted keeps its own `work/work`)
            let mut wname = std::ffi::OsString::from("split-");
            wname.push(&name);
            let w: PathBuf = work.join(wname);
            for d in [&at, &w] {
                match fs::create_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(format!("create {}", bt(d)), e)),
                }
            }
            // a directory the kernel will not overlay stays empty (see the module's doc)
            let _ = overlay::mount(&[src], &at, &w, volatile, &target.join(&name));
        } else if meta.is_file() && fs::symlink_metadata(&at).is_err() {
            // a plain file at the top (rare): a copy, made once
            fs::copy(&src, &at).ctx(|| format!("copy {}", bt(&src)))?;
        }
    }
    Ok(())
}
