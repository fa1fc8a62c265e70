//! Shifted owners: the translation the FUSE overlay applies between the owners on disk and
//! the owners it replies to the kernel, so that a container in a nested user namespace
//! (`--userns=keep-id`) sees the image's owners with no chowned copy of the image. It owns
//! the arithmetic only; the server ([`super::fs::Overlay`]) applies it.
//!
//! The store's convention: layers and upper directories are owned by ids of rbox's user
//! namespace (R), where id 0 is the caller (the image's root) and 1.. the subordinate ids
//! (the image's 1..). A keep-id container runs in a namespace K below R whose map moves
//! ids, e.g. `0 1 1000`, `1000 0 1`, `1001 1001 64536`: K 1000 is R 0. The container's
//! init mounts the root inside K (its mount namespace belongs to K), so the FUSE connection
//! belongs to K: the kernel reads every uid the server replies as a K id, and the server,
//! forked by that init, also sees the layers' owners as K ids. Without a shift, R 0's
//! `/etc` shows as K 1000 (the user); Podman shows 0, from a chowned copy.
//!
//! With K's map (inside K, outside R): an owner the server sees on disk (a K id) is the
//! image's owner `outside(id)` (its R id), and the server replies that number, which the
//! kernel takes as the same number in K: the image's owner as the container sees it. In the
//! other direction an owner the container gives (a K id from the request, or a chown) is
//! the image's owner of that number, stored as the K id whose R id it is: `inside(id)`. So
//! what K's root creates is stored as R 0, and what the container's uid 1000 creates as
//! R 1000, as on a chowned copy: `rbox diff`, `commit` and `export` read the right owners.
//! The same two functions hold when the server and the mount belong to R instead (the reply
//! is then read in R and shown in K through the same map).

/// One id map: `(inside, outside, count)` lines, as a `uid_map` file has them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap(Vec<(u32, u32, u32)>);

/// The id the kernel shows for an owner it cannot map (`/proc/sys/kernel/overflowuid`).
pub const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// Parses a `uid_map` text (`INSIDE OUTSIDE COUNT` per line); `None` when malformed or
    /// empty.
    pub fn parse(text: &str) -> Option<IdMap> {
        let mut lines = Vec::new();
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Vec<u32> = l
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            match v[..] {
                [i, o, n] if n > 0 => lines.push((i, o, n)),
                _ => return None,
            }
        }
        (!lines.is_empty()).then_some(IdMap(lines))
    }

    /// The outside id of inside id `id`, if the map has it.
    pub fn outside(&self, id: u32) -> Option<u32> {
        self.0
            .iter()
            .find(|(i, _, n)| id >= *i && u64::from(id) < u64::from(*i) + u64::from(*n))
            .map(|(i, o, _)| o + (id - i))
    }

    /// The inside id of a map of one id alone (a single-id user namespace), else `None`.
    pub fn single(&self) -> Option<u32> {
        match self.0[..] {
            [(i, _, 1)] => Some(i),
            _ => None,
        }
    }

    /// The inside id of outside id `id`, if the map has it.
    pub fn inside(&self, id: u32) -> Option<u32> {
        self.0
            .iter()
            .find(|(_, o, n)| id >= *o && u64::from(id) < u64::from(*o) + u64::from(*n))
            .map(|(i, o, _)| i + (id - o))
    }
}

/// The owner translation of a FUSE overlay mounted in a nested namespace (see the module
/// doc): the uid and gid maps of that namespace, relative to rbox's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdShift {
    pub uid: IdMap,
    pub gid: IdMap,
}

impl IdShift {
    /// The shift for a namespace with these `uid_map` and `gid_map` texts (relative to
    /// rbox's namespace); `None` when either is malformed.
    pub fn parse(uid_map: &str, gid_map: &str) -> Option<IdShift> {
        Some(IdShift {
            uid: IdMap::parse(uid_map)?,
            gid: IdMap::parse(gid_map)?,
        })
    }

    /// The uid to reply for an owner seen on disk (the overflow id when the map lacks it:
    /// the kernel then shows it as it shows any unmapped owner).
    pub fn uid_to_view(&self, disk: u32) -> u32 {
        self.uid.outside(disk).unwrap_or(OVERFLOW_ID)
    }

    /// The gid to reply for a group seen on disk.
    pub fn gid_to_view(&self, disk: u32) -> u32 {
        self.gid.outside(disk).unwrap_or(OVERFLOW_ID)
    }

    /// The uid to store for an owner the container gives; `None` when rbox's namespace has
    /// no such id.
    pub fn uid_to_disk(&self, view: u32) -> Option<u32> {
        self.uid.inside(view)
    }

    /// The gid to store for a group the container gives.
    pub fn gid_to_disk(&self, view: u32) -> Option<u32> {
        self.gid.inside(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keep-id of uid 1000 with a range of 65536 subordinate ids (rbox's namespace has 65537)
    fn keep_id_1000() -> IdShift {
        let m = "0 1 1000\n1000 0 1\n1001 1001 64536\n";
        IdShift::parse(m, m).unwrap()
    }

    #[test]
    fn maps_parse_and_refuse_garbage() {
        assert_eq!(
            IdMap::parse("         0          1       1000\n  1000 0 1\n"),
            Some(IdMap(vec![(0, 1, 1000), (1000, 0, 1)]))
        );
        assert_eq!(IdMap::parse(""), None);
        assert_eq!(IdMap::parse("0 1"), None);
        assert_eq!(IdMap::parse("0 1 x"), None);
        assert_eq!(IdMap::parse("0 1 0"), None);
        assert_eq!(IdMap::parse("0 1 2 3"), None);
    }

    #[test]
    fn image_owners_show_as_themselves_under_keep_id() {
        let s = keep_id_1000();
        // the server in K sees R 0's /etc as K 1000: it replies 0 (K's root)
        assert_eq!(s.uid_to_view(1000), 0);
        // R 1 (image uid 1) is K 0 to the server: replied as 1
        assert_eq!(s.uid_to_view(0), 1);
        // image uid 100 (R 100) is K 99; uid 1000 (R 1000) is K 999: shown as the user
        assert_eq!(s.uid_to_view(99), 100);
        assert_eq!(s.uid_to_view(999), 1000);
        // above the user the ids are the same everywhere
        assert_eq!(s.uid_to_view(1001), 1001);
        assert_eq!(s.uid_to_view(65536), 65536);
        // an owner the server itself cannot map (already the overflow id) stays unmapped
        assert_eq!(s.uid_to_view(70000), OVERFLOW_ID);
    }

    #[test]
    fn a_single_id_map_names_its_one_id() {
        assert_eq!(IdMap::parse("0 1002 1\n").unwrap().single(), Some(0));
        assert_eq!(IdMap::parse("1002 1002 1").unwrap().single(), Some(1002));
        assert_eq!(
            IdMap::parse("0 1001 1\n1 131072 65536").unwrap().single(),
            None
        );
        assert_eq!(IdMap::parse("0 0 4294967295").unwrap().single(), None);
    }

    #[test]
    fn created_owners_are_stored_in_the_stores_convention() {
        let s = keep_id_1000();
        // K's root creates: stored as R 0, which the server names K 1000
        assert_eq!(s.uid_to_disk(0), Some(1000));
        // the container's uid 1000 creates: stored as R 1000 (K 999)
        assert_eq!(s.uid_to_disk(1000), Some(999));
        assert_eq!(s.gid_to_disk(101), Some(100));
        assert_eq!(s.uid_to_disk(5000), Some(5000));
        assert_eq!(s.uid_to_disk(70000), None);
        // a round trip gives back every id of the range
        for id in (0..=65536).step_by(7).chain([1000, 1001, 65536]) {
            assert_eq!(s.uid_to_view(s.uid_to_disk(id).unwrap()), id);
        }
    }

    #[test]
    fn a_single_id_namespace_shows_others_as_overflow() {
        // a caller without a range: K has only its own uid, which is rbox's 0
        let s = IdShift::parse("1002 0 1\n", "1002 0 1\n").unwrap();
        assert_eq!(s.uid_to_view(1002), 0);
        assert_eq!(s.uid_to_view(0), OVERFLOW_ID);
        assert_eq!(s.uid_to_disk(0), Some(1002));
        assert_eq!(s.uid_to_disk(1002), None);
    }
}

/// The shift applied by a mounted overlay: run as real root in a private mount namespace
/// (`unshare -m`), where every id exists, so what the kernel shows is exactly what the server
/// replies and the layers keep exactly what it stores.
#[cfg(test)]
mod mounted {
    use std::fs;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::{chown, lchown, MetadataExt};
    use std::path::Path;
    use std::process::Command;

    use super::IdShift;
    use crate::mount::fuse::fs::Overlay;

    const INNER: &str = "RBOX_SHIFT_TEST_INNER";
    const NAME: &str = "mount::fuse::shift::mounted::a_mounted_overlay_shifts_owners_both_ways";

    fn dirfd(p: &Path) -> OwnedFd {
        nix::fcntl::open(
            p,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
    }

    fn owner(p: &Path) -> (u32, u32) {
        let m = fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    }

    #[test]
    fn a_mounted_overlay_shifts_owners_both_ways() {
        if std::env::var_os(INNER).is_none() {
            let usable = nix::unistd::geteuid().is_root()
                && fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/fuse")
                    .is_ok();
            if !usable {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "needs root and /dev/fuse (CI runs as root)"
                );
                eprintln!("skipped: needs root and /dev/fuse");
                return;
            }
            let out = Command::new("unshare")
                .args(["-m", "--propagation", "private", "--"])
                .arg(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                .env(INNER, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "inner run failed:\n{text}");
            assert!(text.contains("1 passed"), "inner run ran nothing:\n{text}");
            return;
        }
        // keep-id of uid 1000: the server's 1000 is the image's root, its 0 the image's 1
        let m = "0 1 1000\n1000 0 1\n1001 1001 64536\n";
        let shift = IdShift::parse(m, m).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let (lower, upper, work, mnt) = (t.join("l"), t.join("u"), t.join("w"), t.join("m"));
        for d in [&lower, &upper, &work, &mnt] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/f"), "f").unwrap();
        fs::write(lower.join("etc/g"), "g").unwrap();
        std::os::unix::fs::symlink("f", lower.join("etc/l")).unwrap();
        chown(lower.join("etc"), Some(1000), Some(1000)).unwrap();
        chown(lower.join("etc/f"), Some(1000), Some(1000)).unwrap();
        chown(lower.join("etc/g"), Some(99), Some(100)).unwrap();
        lchown(lower.join("etc/l"), Some(1000), Some(1000)).unwrap();
        chown(&upper, Some(1000), Some(1000)).unwrap();
        let fs_ = Overlay::new(dirfd(&upper), dirfd(&work), vec![dirfd(&lower)])
            .shift_owners(Some(shift));
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            fuser::MountOption::FSName("rbox-shift-test".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        cfg.acl = fuser::SessionACL::All;
        cfg.n_threads = Some(2);
        let session = fuser::Session::new(fs_, &mnt, &cfg)
            .unwrap()
            .spawn()
            .unwrap();
        let res = std::panic::catch_unwind(|| {
            // replies: the image's owners
            assert_eq!(owner(&mnt), (0, 0));
            assert_eq!(owner(&mnt.join("etc")), (0, 0));
            assert_eq!(owner(&mnt.join("etc/f")), (0, 0));
            assert_eq!(owner(&mnt.join("etc/g")), (100, 101));
            assert_eq!(owner(&mnt.join("etc/l")), (0, 0));
            // stored: what root (0) makes is the server's 1000, a chown to 100:101 is 99:100
            fs::write(mnt.join("etc/new"), "n").unwrap();
            assert_eq!(owner(&mnt.join("etc/new")), (0, 0));
            assert_eq!(owner(&upper.join("etc/new")), (1000, 1000));
            chown(mnt.join("etc/new"), Some(100), Some(101)).unwrap();
            assert_eq!(owner(&mnt.join("etc/new")), (100, 101));
            assert_eq!(owner(&upper.join("etc/new")), (99, 100));
            // a copy-up keeps the owner on disk
            fs::write(mnt.join("etc/g"), "changed").unwrap();
            assert_eq!(owner(&upper.join("etc/g")), (99, 100));
            assert_eq!(owner(&upper.join("etc")), (1000, 1000));
            // a chown to an id rbox's namespace lacks is refused (EINVAL), nothing changes
            let e = chown(mnt.join("etc/g"), Some(70000), None).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
            assert_eq!(owner(&mnt.join("etc/g")), (100, 101));
        });
        let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
        drop(session);
        if let Err(p) = res {
            std::panic::resume_unwind(p);
        }
    }
}
