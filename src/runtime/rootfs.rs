//! Mounting the container's root filesystem: kernel overlayfs through the new mount API
//! (`fsopen` + one `lowerdir+` per layer, no option-length limit; kernel >= 6.8), falling back
//! to mount(2)'s option string on older kernels. Always with `userxattr`: layers carry
//! `user.overlay.opaque` so that the same store works inside a user namespace and as root.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

use super::sys;

/// Mount an overlay of `lowers` (topmost first) with `upper`/`work` at `target`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
    target: &Path,
) -> Result<()> {
    match mount_overlay_fsopen(lowers, upper, work, volatile, target) {
        Ok(()) => Ok(()),
        // EINVAL on "lowerdir+" means a kernel before 6.8; ENOSYS, no new mount API
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
            mount_overlay_legacy(lowers, upper, work, volatile, target)
        }
        Err(e) => Err(e).context(format!("mount overlay at `{}`", target.display())),
    }
}

fn mount_overlay_fsopen(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
    target: &Path,
) -> io::Result<()> {
    let fs = sys::fsopen("overlay")?;
    sys::fsconfig_string(&fs, "source", "overlay")?;
    for l in lowers {
        sys::fsconfig_string(&fs, "lowerdir+", &l.to_string_lossy())?;
    }
    sys::fsconfig_string(&fs, "upperdir", &upper.to_string_lossy())?;
    sys::fsconfig_string(&fs, "workdir", &work.to_string_lossy())?;
    sys::fsconfig_flag(&fs, "userxattr")?;
    if volatile {
        sys::fsconfig_flag(&fs, "volatile")?;
    }
    sys::fsconfig_create(&fs)?;
    let mnt = sys::fsmount(&fs, 0)?;
    sys::move_mount_to(&mnt, &target.to_string_lossy())
}

fn mount_overlay_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
    target: &Path,
) -> Result<()> {
    let lower: Vec<String> = lowers
        .iter()
        .map(|l| escape(&l.to_string_lossy()))
        .collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        escape(&upper.to_string_lossy()),
        escape(&work.to_string_lossy())
    );
    if volatile {
        data.push_str(",volatile");
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .with_context(|| {
        format!(
            "mount overlay at `{}` ({} layers)",
            target.display(),
            lowers.len()
        )
    })
}

/// overlayfs splits its options on ',' and ':' unless escaped with '\'.
fn escape(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// The copy (vfs) driver: apply `lowers` (bottom layer first) into `dest`, honouring the
/// overlay-form whiteouts (0/0 character devices) and opaque directories the store writes.
/// Owners, modes (setuid included), symlinks, hard links within a layer and mtimes are kept.
pub fn copy_layers(lowers: &[PathBuf], dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("create `{}`", dest.display()))?;
    for l in lowers {
        let mut links = std::collections::HashMap::new();
        copy_dir(l, dest, &mut links).with_context(|| format!("copy layer `{}`", l.display()))?;
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        // bounded descriptors whatever the depth (std's remove_dir_all holds one per level)
        Ok(m) if m.is_dir() => rbox_storage::remove_tree(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn copy_meta(src: &std::fs::Metadata, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::lchown(dst, Some(src.uid()), Some(src.gid()))?;
    if !src.file_type().is_symlink() {
        // chown clears setuid bits: set the mode after it
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(src.mode() & 0o7777))?;
    }
    let t = filetime_of(src);
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

fn filetime_of(m: &std::fs::Metadata) -> nix::sys::time::TimeSpec {
    use std::os::unix::fs::MetadataExt;
    nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec())
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut std::collections::HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for ent in std::fs::read_dir(src)? {
        let ent = ent?;
        let s = ent.path();
        let d = dst.join(ent.file_name());
        let m = std::fs::symlink_metadata(&s)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            remove_any(&d)?;
        } else if ft.is_dir() {
            let opaque = sys::lgetxattr(&s, "user.overlay.opaque").is_some_and(|v| v == b"y");
            match std::fs::symlink_metadata(&d) {
                Ok(dm) if dm.is_dir() && opaque => {
                    rbox_storage::remove_tree(&d)?;
                    std::fs::create_dir(&d)?;
                }
                Ok(dm) if dm.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&d)?;
                    std::fs::create_dir(&d)?;
                }
                Err(_) => std::fs::create_dir(&d)?,
            }
            copy_dir(&s, &d, links)?;
            copy_meta(&m, &d)?;
        } else {
            remove_any(&d)?;
            if m.nlink() > 1 && !ft.is_symlink() {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    std::fs::hard_link(first, &d)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), d.clone());
            }
            if ft.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
            } else if ft.is_file() {
                std::fs::copy(&s, &d)?;
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
    #[test]
    fn escapes_separators() {
        assert_eq!(super::escape("/a:b,c"), "/a\\:b\\,c");
    }
}
