//! The copy driver (Podman's `vfs`): the image's layers applied one after the other into the
//! container's own `rootfs/`, once at create time. Slow to create and heavy on disk, but it
//! needs nothing from the kernel beyond a bind mount, so it is the fallback where overlayfs
//! cannot be mounted.
//!
//! Honours the overlay-form whiteouts (0/0 character devices) and opaque directories
//! (`user.overlay.opaque=y`) the store writes when it unpacks layers. Owners, modes (setuid
//! included), symlinks, hard links within a layer and mtimes are kept.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::store::remove_tree;
use crate::{bt, sys, IoContext, Result};

/// Applies `lowers` (bottom layer first) into `dest`, created when missing.
pub fn copy_layers(lowers: &[PathBuf], dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).ctx(|| format!("create {}", bt(dest)))?;
    for l in lowers {
        let mut links = HashMap::new();
        copy_dir(l, dest, &mut links).ctx(|| format!("copy layer {}", bt(l)))?;
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        // bounded descriptors whatever the depth (std's remove_dir_all holds one per level)
        Ok(m) if m.is_dir() => remove_tree(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn copy_meta(src: &fs::Metadata, dst: &Path) -> io::Result<()> {
    match std::os::unix::fs::lchown(dst, Some(src.uid()), Some(src.gid())) {
        // an owner with no id in this user namespace (a lower of another user's additional
        // image store): the copy stays the namespace root's
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        r => r?,
    }
    if !src.file_type().is_symlink() {
        // chown clears setuid bits: set the mode after it
        fs::set_permissions(dst, fs::Permissions::from_mode(src.mode() & 0o7777))?;
    }
    let t = nix::sys::time::TimeSpec::new(src.mtime(), src.mtime_nsec());
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    for ent in fs::read_dir(src)? {
        let ent = ent?;
        let s = ent.path();
        let d = dst.join(ent.file_name());
        let m = fs::symlink_metadata(&s)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            remove_any(&d)?;
        } else if ft.is_dir() {
            let opaque = sys::lgetxattr(&s, "user.overlay.opaque").is_some_and(|v| v == b"y");
            match fs::symlink_metadata(&d) {
                Ok(dm) if dm.is_dir() && opaque => {
                    remove_tree(&d)?;
                    fs::create_dir(&d)?;
                }
                Ok(dm) if dm.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&d)?;
                    fs::create_dir(&d)?;
                }
                Err(_) => fs::create_dir(&d)?,
            }
            copy_dir(&s, &d, links)?;
            copy_meta(&m, &d)?;
        } else {
            remove_any(&d)?;
            if m.nlink() > 1 && !ft.is_symlink() {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    fs::hard_link(first, &d)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), d.clone());
            }
            if ft.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            } else if ft.is_file() {
                fs::copy(&s, &d)?;
            } else if ft.is_fifo() {
                nix::unistd::mkfifo(&d, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
            } else {
                continue; // sockets and devices are not carried into containers
            }
            copy_meta(&m, &d)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let p = root.join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn applies_layers_bottom_first_with_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let bottom = layer(t.path(), "1");
        fs::create_dir_all(bottom.join("etc/keep")).unwrap();
        fs::write(bottom.join("etc/gone"), b"old").unwrap();
        fs::write(bottom.join("etc/keep/a"), b"a").unwrap();
        fs::write(bottom.join("f"), b"1").unwrap();
        fs::set_permissions(bottom.join("f"), fs::Permissions::from_mode(0o4755)).unwrap();
        let top = layer(t.path(), "2");
        fs::create_dir_all(top.join("etc")).unwrap();
        // a whiteout: the 0/0 character device, which an unprivileged user may make
        nix::sys::stat::mknod(
            &top.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        fs::write(top.join("g"), b"2").unwrap();
        fs::hard_link(top.join("g"), top.join("h")).unwrap();
        let dest = t.path().join("rootfs");
        copy_layers(&[bottom, top], &dest).unwrap();
        assert!(!dest.join("etc/gone").exists());
        assert_eq!(fs::read(dest.join("etc/keep/a")).unwrap(), b"a");
        assert_eq!(
            fs::metadata(dest.join("f")).unwrap().permissions().mode() & 0o7777,
            0o4755
        );
        let (g, h) = (
            fs::metadata(dest.join("g")).unwrap(),
            fs::metadata(dest.join("h")).unwrap(),
        );
        assert_eq!(g.ino(), h.ino());
    }
}
