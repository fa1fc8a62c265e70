//! Where containers' upper and work directories go when the store root cannot hold them:
//! kernel overlay refuses (or misbehaves with) an upper directory on a network filesystem
//! (NFS, Lustre, GPFS, CIFS, BeeGFS, CephFS, FUSE ones such as sshfs), which is where HPC
//! home directories and project spaces live. This module only names the filesystem under a
//! path ([`network_fs`], [`network_fs_at`]); the `rbox` binary decides the place (a
//! configured directory, else node-local `$TMPDIR`, else `/dev/shm`) and hands it to
//! [`crate::Store::set_upper_root`].

use std::path::{Path, PathBuf};

/// statfs `f_type` magics of network and cluster filesystems (linux/magic.h, and each
/// filesystem's own source for those out of tree), with the name `rbox info` prints.
const NETWORK_FS: &[(i64, &str)] = &[
    (0x6969, "nfs"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x517B, "smb"),
    (0x1983_0326, "beegfs"),
    (0x00C3_6400, "ceph"),
    (0x6573_5546, "fuse"),
    (0x0102_1997, "9p"),
    (0x5346_414F, "afs"),
    (0x0AAD_7AAD, "panfs"),
    (0xA501_FCF5, "vxfs"),
];

/// The name of the network filesystem with this statfs magic, or `None` for a local one.
/// FUSE counts as network: sshfs and most cluster clients are FUSE, and kernel overlay takes
/// no FUSE upper directory anyway.
pub fn network_fs(f_type: i64) -> Option<&'static str> {
    NETWORK_FS
        .iter()
        .find(|(m, _)| *m == f_type)
        .map(|(_, n)| *n)
}

/// [`network_fs`] of the filesystem holding `path` (`None` when local or when statfs fails:
/// a path that cannot be examined keeps the default placement).
pub fn network_fs_at(path: &Path) -> Option<&'static str> {
    let st = nix::sys::statfs::statfs(path).ok()?;
    #[allow(clippy::unnecessary_cast)]
    network_fs(st.filesystem_type().0 as i64)
}

/// Where containers' upper directories go, and why (what `rbox info` says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperPlacement {
    pub dir: PathBuf,
    pub reason: String,
}

/// The placement decision: a configured directory wins; else, when `fs_of(store_root)` names
/// a network filesystem, `$TMPDIR` (when set, absolute and itself local), else `/dev/shm`,
/// each with a per-user subdirectory `rbox-upper-<uid>`; else `None` (in the store).
pub fn choose_upper(
    configured: Option<&Path>,
    store_root: &Path,
    tmpdir: Option<&Path>,
    uid: u32,
    fs_of: impl Fn(&Path) -> Option<&'static str>,
) -> Option<UpperPlacement> {
    if let Some(c) = configured {
        return Some(UpperPlacement {
            dir: c.to_path_buf(),
            reason: "configured (RBOX_UPPER_DIR)".into(),
        });
    }
    let net = fs_of(store_root)?;
    let base = tmpdir
        .filter(|t| t.is_absolute() && fs_of(t).is_none())
        .unwrap_or(Path::new("/dev/shm"));
    Some(UpperPlacement {
        dir: base.join(format!("rbox-upper-{uid}")),
        reason: format!(
            "the store is on a network filesystem ({net}), where kernel overlay takes no upper directory"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uppers_leave_a_network_store_for_node_local_storage() {
        let nfs = |p: &Path| p.starts_with("/home").then_some("nfs");
        let local = |_: &Path| None;
        let home = Path::new("/home/u/.local/share/rbox");
        // local store: stay
        assert_eq!(choose_upper(None, home, None, 1000, local), None);
        // network store: $TMPDIR, else /dev/shm
        let p = choose_upper(None, home, Some(Path::new("/scratch")), 1000, nfs).unwrap();
        assert_eq!(p.dir, PathBuf::from("/scratch/rbox-upper-1000"));
        assert!(p.reason.contains("nfs"), "{}", p.reason);
        let p = choose_upper(None, home, None, 1000, nfs).unwrap();
        assert_eq!(p.dir, PathBuf::from("/dev/shm/rbox-upper-1000"));
        // a $TMPDIR on the network filesystem too, or relative, is no better
        for t in ["/home/u/tmp", "tmp"] {
            let p = choose_upper(None, home, Some(Path::new(t)), 1000, nfs).unwrap();
            assert_eq!(p.dir, PathBuf::from("/dev/shm/rbox-upper-1000"), "{t}");
        }
        // configured: always, even on a local store
        let p = choose_upper(Some(Path::new("/local/x")), home, None, 1000, local).unwrap();
        assert_eq!(p.dir, PathBuf::from("/local/x"));
    }

    #[test]
    fn network_filesystems_are_told_from_local_ones() {
        assert_eq!(network_fs(0x6969), Some("nfs"));
        assert_eq!(network_fs(0x0BD0_0BD0), Some("lustre"));
        assert_eq!(network_fs(0x4750_4653), Some("gpfs"));
        assert_eq!(network_fs(0x1983_0326), Some("beegfs"));
        assert_eq!(network_fs(0x00C3_6400), Some("ceph"));
        assert_eq!(network_fs(0x6573_5546), Some("fuse"));
        // ext4, xfs, btrfs, tmpfs
        for local in [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994] {
            assert_eq!(network_fs(local), None, "{local:#x}");
        }
        // this test's temp dir is local on CI machines; /proc is not a network fs either
        assert_eq!(network_fs_at(Path::new("/proc")), None);
    }
}
