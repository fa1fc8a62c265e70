//! `--userns=auto`: the id range each container gets, allocated as Podman does it. A user
//! with a subordinate range gets ids of rbox's namespace (1 and up are the range); root gets
//! host ids from the range of the `containers` user in /etc/subuid and /etc/subgid
//! (storage.conf's `root-auto-userns-user` names another). Without `size=`, the range is as
//! large as the image needs, as Podman 4.3.1 sizes it: its highest file owner + 1, its
//! /etc/passwd's highest uid or gid (the `nobody` entry aside; no + 1: Podman's Debian image
//! gets 65534 for `_apt`'s gid 65534, which shows as the overflow id anyway, and a passwd
//! user at the very top stays unmapped as under Podman) and its configured numeric user + 1,
//! at least 1024 (storage.conf's `auto-userns-min-size`) and at most 65536
//! (`auto-userns-max-size`; Podman 4.3.1 rootless ignores both keys).
//!
//! The allocation is the first free ids not used by any container's recorded map or by a
//! reservation (`userns-auto/<id>` in the store, written under the flock
//! `userns-auto/lock`), so parallel creates never share a range. A reservation outlives its
//! creating process only while the container's directory exists: `rm` (`state::remove`)
//! drops it, and the next allocation removes any left by a failed create. What this module does not own: how the container enters those maps
//! (launch's `own_maps`, init's `enter_nested`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::state;

use super::userns::{self, SubRange};

/// Podman's text when no range of the size fits (scripts match it).
pub const NO_IDS: &str = "creating container storage: could not find enough available IDs";

/// containers-storage.conf(5)'s defaults for `auto-userns-min-size` and `-max-size`.
pub const MIN_SIZE: u32 = 1024;
pub const MAX_SIZE: u32 = 65536;

/// The user whose subordinate ranges root's auto containers take (containers-storage.conf's
/// `root-auto-userns-user`).
pub const ROOT_USER: &str = "containers";

/// What an image asks of its range: the highest ids it names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// highest uid or gid owning a file of its layers
    pub owner: Option<u32>,
    /// highest uid or gid of its /etc/passwd (but `nobody`'s)
    pub passwd: Option<u32>,
    /// its configured user or group, when numeric
    pub user: Option<u32>,
}

impl Needs {
    /// The range's size: the owners and the user fit, passwd's highest id is the size
    /// (Podman's rule, see the module doc); within `[min, max]` (max wins).
    pub fn size(&self, min: u32, max: u32) -> u32 {
        let fit = [self.owner, self.user]
            .into_iter()
            .flatten()
            .map(|h| h.saturating_add(1));
        let need = fit.chain(self.passwd).max().unwrap_or(0);
        need.max(min).min(max)
    }
}

/// The highest uid or gid of a passwd file's entries, `nobody` aside (Podman leaves it out:
/// busybox's nobody is 65534, and its containers get 1024 ids).
pub fn passwd_highest(text: &str) -> Option<u32> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] != "nobody").then_some(f)
        })
        .flat_map(|f| [f[2].parse::<u32>().ok(), f[3].parse::<u32>().ok()])
        .flatten()
        .max()
}

/// The numeric ids of an image's `User` (`uid`, `uid:gid`); names count through passwd.
pub fn user_highest(user: &str) -> Option<u32> {
    user.split(':').filter_map(|p| p.parse::<u32>().ok()).max()
}

/// The highest uid or gid owning anything under `dir` (symlinks not followed), as this
/// process sees them: rbox's namespace shows a rootless store's owners as the image's, and
/// root's store holds them as they are. A whole walk: for layers whose record lacks it.
pub fn highest_owner(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let mut best: Option<u32> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            best = best.max(Some(m.uid().max(m.gid())));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    best
}

/// The image's /etc/passwd: the topmost layer's that has one; a whiteout (or anything but a
/// file) there hides the lower ones.
fn image_passwd(lowers: &[PathBuf]) -> Option<String> {
    for l in lowers.iter().rev() {
        let p = l.join("etc/passwd");
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => return fs::read_to_string(&p).ok(),
            Ok(_) => return None,
            Err(_) => {}
        }
    }
    None
}

/// What the image with these layer directories (bottom first), highest file owner
/// (`owner`) and configured user needs.
pub fn image_needs(lowers: &[PathBuf], user: &str, owner: Option<u32>) -> Needs {
    let passwd = image_passwd(lowers);
    Needs {
        owner,
        passwd: passwd.as_deref().and_then(passwd_highest),
        user: user_highest(user),
    }
}

/// Where auto ranges come from: `count` ids from `uid`/`gid` on, in the ids of the
/// namespace rbox writes the maps from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub uid: u32,
    pub gid: u32,
    pub count: u32,
}

impl Pool {
    /// The offsets into the pool that a map line (container id, outside id, count) of the
    /// uid (`gid` false) or gid side uses, if any.
    fn used(&self, gid: bool, (_, h, n): (u32, u32, u32)) -> Option<(u32, u32)> {
        let start = u64::from(if gid { self.gid } else { self.uid });
        let lo = u64::from(h).max(start);
        let hi = (u64::from(h) + u64::from(n)).min(start + u64::from(self.count));
        (lo < hi).then(|| ((lo - start) as u32, (hi - lo) as u32))
    }
}

/// The first offset from 0 where `size` ids lie free of the `taken` (offset, count)
/// ranges, within `0..count`.
pub fn first_free(taken: &[(u32, u32)], size: u32, count: u32) -> Option<u32> {
    let mut taken = taken.to_vec();
    taken.sort_unstable();
    let mut start = 0u64;
    for (h, n) in taken {
        if u64::from(h) >= start + u64::from(size) {
            break;
        }
        start = start.max(u64::from(h) + u64::from(n));
    }
    (start + u64::from(size) <= u64::from(count)).then_some(start as u32)
}

/// The pool of this user: rbox's namespace's 1..=count with a subordinate range, the
/// `containers` ranges (by default) for root; `None` without one (the caller refuses with
/// Podman's text).
pub fn pool(mode: &userns::Mode, root_user: &str) -> Option<Pool> {
    match mode {
        userns::Mode::SubIds { uid, gid } => Some(Pool {
            uid: 1,
            gid: 1,
            count: uid.count.min(gid.count),
        }),
        userns::Mode::Root => {
            let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
            let range = |p: &str| -> Option<SubRange> {
                userns::parse_subid(&read(p), Some(root_user), u32::MAX)
            };
            let (u, g) = (range("/etc/subuid")?, range("/etc/subgid")?);
            Some(Pool {
                uid: u.start,
                gid: g.start,
                count: u.count.min(g.count),
            })
        }
        userns::Mode::Single => None,
    }
}

/// The user whose ranges root's auto containers take, from storage.conf.
pub fn root_user() -> String {
    crate::config::storage()
        .ok()
        .and_then(|c| c.root_auto_userns_user)
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| ROOT_USER.to_string())
}

/// storage.conf's `auto-userns-min-size` and `auto-userns-max-size`, else Podman's defaults.
pub fn size_limits() -> (u32, u32) {
    let c = crate::config::storage().unwrap_or_default();
    (
        c.auto_userns_min_size.unwrap_or(MIN_SIZE),
        c.auto_userns_max_size.unwrap_or(MAX_SIZE),
    )
}

/// A reservation: the first outside uid and gid, the size, the creating process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reservation {
    uid: u32,
    gid: u32,
    size: u32,
    pid: i32,
}

impl Reservation {
    fn parse(text: &str) -> Option<Reservation> {
        let v: Vec<&str> = text.split_whitespace().collect();
        let [u, g, n, p] = v[..] else { return None };
        Some(Reservation {
            uid: u.parse().ok()?,
            gid: g.parse().ok()?,
            size: n.parse().ok()?,
            pid: p.parse().ok()?,
        })
    }

    fn text(&self) -> String {
        format!("{} {} {} {}\n", self.uid, self.gid, self.size, self.pid)
    }
}

fn reservations_dir(root: &Path) -> PathBuf {
    root.join("userns-auto")
}

/// Whether process `pid` exists (a zombie or another user's counts).
fn alive(pid: i32) -> bool {
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    )
}

/// Drops container `id`'s reservation, if it has one (its container is being removed).
pub fn release(root: &Path, id: &str) {
    match fs::remove_file(reservations_dir(root).join(id)) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            tracing::debug!("remove the --userns=auto reservation of {id}: {e}")
        }
        _ => {}
    }
}

/// One id map line: container id, outside id, count (as `state::Spec`'s maps hold them).
pub type MapLine = (u32, u32, u32);

/// Allocates `size` ids from `pool` for container `id`: the first offset that no recorded
/// container's map and no live reservation uses, reserved before the lock is released.
/// Returns the uid and gid map lines (container 0 at the range's start).
pub fn allocate(g: &Context, pool: Pool, size: u32, id: &str) -> Result<(MapLine, MapLine)> {
    let root = g.storage_root()?;
    let dir = reservations_dir(&root);
    fs::create_dir_all(&dir).with_context(|| format!("create `{}`", dir.display()))?;
    let lock_path = dir.join("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open `{}`", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("lock `{}`: {e}", lock_path.display()))?;
    let mut taken = Vec::new();
    for rec in state::list(g)? {
        taken.extend(
            rec.spec
                .opts
                .uid_map
                .iter()
                .filter_map(|l| pool.used(false, *l)),
        );
        taken.extend(
            rec.spec
                .opts
                .gid_map
                .iter()
                .filter_map(|l| pool.used(true, *l)),
        );
    }
    let rd = fs::read_dir(&dir).with_context(|| format!("read `{}`", dir.display()))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 64 {
            continue;
        }
        let r = fs::read_to_string(e.path())
            .ok()
            .and_then(|t| Reservation::parse(&t));
        match r {
            Some(r) if alive(r.pid) || crate::layout::container_dir(&root, &name).exists() => {
                taken.extend(pool.used(false, (0, r.uid, r.size)));
                taken.extend(pool.used(true, (0, r.gid, r.size)));
            }
            // its container is gone (removed, or its create failed)
            _ => match fs::remove_file(e.path()) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    tracing::debug!("remove a stale --userns=auto reservation: {e}")
                }
                _ => {}
            },
        }
    }
    let Some(off) = first_free(&taken, size, pool.count) else {
        bail!("{NO_IDS}");
    };
    let r = Reservation {
        uid: pool.uid + off,
        gid: pool.gid + off,
        size,
        pid: std::process::id() as i32,
    };
    let path = dir.join(id);
    let tmp = dir.join(format!(".{id}.tmp"));
    fs::write(&tmp, r.text())
        .and_then(|()| fs::rename(&tmp, &path))
        .with_context(|| format!("write `{}`", path.display()))?;
    Ok(((0, r.uid, size), (0, r.gid, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_ranges_take_the_first_free_ids() {
        assert_eq!(first_free(&[], 1024, 65536), Some(0));
        assert_eq!(first_free(&[(0, 1024)], 500, 65536), Some(1024));
        // a hole big enough before a later range
        assert_eq!(first_free(&[(1024, 500), (0, 100)], 900, 65536), Some(100));
        assert_eq!(
            first_free(&[(1024, 500), (0, 100)], 1000, 65536),
            Some(1524)
        );
        assert_eq!(first_free(&[], 65536, 65536), Some(0));
        assert_eq!(first_free(&[(0, 1)], 65536, 65536), None);
        // overlapping taken ranges
        assert_eq!(first_free(&[(0, 100), (50, 100)], 10, 65536), Some(150));
    }

    #[test]
    fn the_pool_counts_what_maps_use_of_it() {
        let p = Pool {
            uid: 100_000,
            gid: 200_000,
            count: 65536,
        };
        assert_eq!(p.used(false, (0, 100_010, 5)), Some((10, 5)));
        assert_eq!(p.used(true, (0, 200_010, 5)), Some((10, 5)));
        // outside the pool, or only partly inside
        assert_eq!(p.used(false, (0, 0, 1)), None);
        assert_eq!(p.used(false, (0, 99_990, 20)), Some((0, 10)));
        assert_eq!(p.used(false, (0, 165_530, 100)), Some((65530, 6)));
        // rootless: rbox's namespace id 0 (the user) is not in the pool
        let r = Pool {
            uid: 1,
            gid: 1,
            count: 65536,
        };
        assert_eq!(r.used(false, (0, 0, 1)), None);
        assert_eq!(r.used(false, (0, 1, 1024)), Some((0, 1024)));
    }

    #[test]
    fn the_size_fits_every_id_the_image_names() {
        // Podman 4.3.1: busybox (owners up to 1000, passwd 1000 and nobody) gets 1024
        let bb = Needs {
            owner: Some(1000),
            passwd: Some(1000),
            user: None,
        };
        assert_eq!(bb.size(MIN_SIZE, MAX_SIZE), 1024);
        // a file of 5000:6000 -> 6001, `User: 7000` -> 7001
        let f = Needs {
            owner: Some(6000),
            ..bb
        };
        assert_eq!(f.size(MIN_SIZE, MAX_SIZE), 6001);
        let u = Needs {
            user: Some(7000),
            ..bb
        };
        assert_eq!(u.size(MIN_SIZE, MAX_SIZE), 7001);
        // passwd: its highest id (Podman: user 3000 -> 3000, Debian's _apt gid 65534 -> 65534)
        let p = Needs {
            passwd: Some(3000),
            ..bb
        };
        assert_eq!(p.size(MIN_SIZE, MAX_SIZE), 3000);
        assert_eq!(Needs::default().size(MIN_SIZE, MAX_SIZE), 1024);
        // storage.conf's limits
        assert_eq!(f.size(8000, MAX_SIZE), 8000);
        assert_eq!(f.size(MIN_SIZE, 2000), 2000);
        assert_eq!(
            Needs {
                owner: Some(u32::MAX),
                ..bb
            }
            .size(MIN_SIZE, MAX_SIZE),
            MAX_SIZE
        );
    }

    #[test]
    fn passwd_counts_uids_and_gids_but_nobody() {
        let bb = "root:x:0:0:root:/root:/bin/sh\n\
                  tester:x:1000:1000:tester:/home/tester:/bin/sh\n\
                  nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
        assert_eq!(passwd_highest(bb), Some(1000));
        assert_eq!(
            passwd_highest(&format!("{bb}a:x:100:3500::/:/bin/sh\n")),
            Some(3500)
        );
        // another name with nobody's id counts (Podman: 65534 ids)
        assert_eq!(
            passwd_highest(&format!("{bb}x:x:65534:0::/:/bin/sh\n")),
            Some(65534)
        );
        assert_eq!(passwd_highest("garbage\n"), None);
        assert_eq!(user_highest("7000"), Some(7000));
        assert_eq!(user_highest("10:7001"), Some(7001));
        assert_eq!(user_highest("tester"), None);
        assert_eq!(user_highest(""), None);
    }

    #[test]
    fn reservations_read_back() {
        let r = Reservation {
            uid: 1,
            gid: 2,
            size: 1024,
            pid: 42,
        };
        assert_eq!(Reservation::parse(&r.text()), Some(r));
        assert_eq!(Reservation::parse("1 2 3"), None);
    }
}
