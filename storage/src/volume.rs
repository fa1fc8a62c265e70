//! Volumes of the `local` driver: a directory per volume, `volumes/<name>/_data` (what
//! containers mount) beside `volumes/<name>/volume.json` (the [`VolumeRecord`]).
//!
//! Owns the volume names (Podman's grammar), the records, creating a volume in one rename
//! (so no half-made volume is ever visible), removal through `tmp/`, the first-use copy of an
//! image's content into a new volume, and tar export and import of a volume's content. It
//! does not own which containers use a volume (the `rbox` binary's container records): a
//! caller checks that before [`Store::remove_volume`]. Everything runs in the caller's user
//! namespace, so owners copied or unpacked here are the container's ids.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstatat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::mount::copy::copy_layers;
use crate::store::Store;
use crate::{bt, sys, Error, IoContext, Result};

/// The one driver there is, as Podman names it.
pub const LOCAL_DRIVER: &str = "local";

/// One volume, as `volume.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    /// always [`LOCAL_DRIVER`]
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `-o KEY=VALUE` as given (`o=uid=1,gid=2` is kept as `o`)
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// RFC 3339 with nanoseconds, as Podman shows it
    pub created: String,
    /// made for one container (`-v /path`, an image VOLUME): `rm -v` removes it with it
    #[serde(default)]
    pub anonymous: bool,
    /// owner of `_data`, from `-o o=uid=N,gid=N`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// still empty and never mounted: the first container copies its image's content in
    #[serde(default)]
    pub needs_copy_up: bool,
}

impl VolumeRecord {
    /// A new volume's record: created now, not yet copied up.
    pub fn new(name: &str) -> VolumeRecord {
        VolumeRecord {
            name: name.to_string(),
            driver: LOCAL_DRIVER.to_string(),
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            created: now_nanos(),
            anonymous: false,
            uid: None,
            gid: None,
            needs_copy_up: true,
        }
    }
}

/// Valid volume names, as Podman takes them: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_volume_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok && name.len() <= 255 {
        Ok(())
    } else {
        Err(Error::InvalidVolumeName(name.to_string()))
    }
}

/// The current time as RFC 3339 with nanoseconds (`2026-11-25T00:27:57.825565375Z`).
pub(crate) fn now_nanos() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = crate::archive::rfc3339(d.as_secs() as i64);
    format!("{}.{:09}Z", s.trim_end_matches('Z'), d.subsec_nanos())
}

/// `volumes/` under a store root: a pure function, for the lock-free listing that
/// completion does without a [`Store`].
pub fn volumes_dir_in(root: &Path) -> PathBuf {
    root.join("volumes")
}

impl Store {
    /// `volumes/`.
    pub fn volumes_dir(&self) -> PathBuf {
        volumes_dir_in(self.root())
    }

    /// `volumes/<name>/`.
    fn volume_dir(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name)
    }

    /// `volumes/<name>/_data`: what a container mounts (Podman's `Mountpoint`).
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    fn volume_lock(&self, name: &str) -> Result<crate::lock::LockGuard> {
        self.lock(&format!("volume-{name}"))
    }

    /// Creates the volume `rec` names: `_data` (owned by `rec.uid`/`rec.gid` when given) and
    /// its record appear together by one rename. [`Error::VolumeExists`] when it is there.
    pub fn create_volume(&self, rec: &VolumeRecord) -> Result<()> {
        validate_volume_name(&rec.name)?;
        let dir = self.volume_dir(&rec.name);
        let vols = self.volumes_dir();
        fs::create_dir_all(&vols).ctx(|| format!("create {}", bt(&vols)))?;
        let _g = self.volume_lock(&rec.name)?;
        if dir.exists() {
            return Err(Error::VolumeExists(rec.name.clone()));
        }
        let tmp = self.tmp_path("volume");
        let data = tmp.path.join("_data");
        fs::create_dir_all(&data).ctx(|| format!("create {}", bt(&data)))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755))
            .ctx(|| format!("chmod {}", bt(&data)))?;
        if rec.uid.is_some() || rec.gid.is_some() {
            std::os::unix::fs::chown(&data, rec.uid, rec.gid)
                .ctx(|| format!("chown {}", bt(&data)))?;
        }
        let json = serde_json::to_vec_pretty(rec).expect("plain struct");
        fs::write(tmp.path.join("volume.json"), json)
            .ctx(|| format!("write {}", bt(&tmp.path.join("volume.json"))))?;
        match fs::rename(&tmp.path, &dir) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                return Err(Error::VolumeExists(rec.name.clone()))
            }
            Err(e) => return Err(Error::io(format!("rename into {}", bt(&dir)), e)),
        }
        tmp.keep();
        Ok(())
    }

    /// The record of volume `name`; [`Error::VolumeNotFound`] when there is none.
    pub fn volume(&self, name: &str) -> Result<VolumeRecord> {
        if validate_volume_name(name).is_err() {
            return Err(Error::VolumeNotFound(name.to_string()));
        }
        let p = self.volume_dir(name).join("volume.json");
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::VolumeNotFound(name.to_string()))
            }
            Err(e) => return Err(Error::io(format!("read {}", bt(&p)), e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::io(format!("parse {}", bt(&p)), io::Error::other(e)))
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let dir = self.volumes_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read {}", bt(&dir)), e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.ctx(|| format!("read {}", bt(&dir)))?;
            let Some(name) = ent.file_name().to_str().map(String::from) else {
                continue;
            };
            match self.volume(&name) {
                Ok(v) => out.push(v),
                // removed meanwhile
                Err(Error::VolumeNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes volume `name` and its content (through `tmp/`, so a crash leaves no half
    /// volume in place). Whether containers still use it is the caller's check.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.volume(name)?;
        let _g = self.volume_lock(name)?;
        self.remove_dir_atomic(&self.volume_dir(name))
    }

    fn write_volume_record(&self, rec: &VolumeRecord) -> Result<()> {
        let json = serde_json::to_vec_pretty(rec).expect("plain struct");
        self.write_atomic(&self.volume_dir(&rec.name).join("volume.json"), &json)
    }

    /// The first mount of volume `name` at `path` in a container whose root is `lowers`
    /// (layer directories, bottom first, in the store's overlay form): when the volume is new
    /// and still empty, the merged content of `path` is copied in with its owners and modes,
    /// and `_data` takes the owner and mode of that directory. With `copy` false (`nocopy`)
    /// nothing is copied, then or later. Returns whether anything was copied.
    pub fn populate_volume(
        &self,
        name: &str,
        lowers: &[PathBuf],
        path: &str,
        copy: bool,
    ) -> Result<bool> {
        let _g = self.volume_lock(name)?;
        let mut rec = self.volume(name)?;
        if !rec.needs_copy_up {
            return Ok(false);
        }
        if !copy {
            // the first mount decides: once a container had it, never copy into a volume
            // it may be writing to
            rec.needs_copy_up = false;
            self.write_volume_record(&rec)?;
            return Ok(false);
        }
        let data = self.volume_data(name);
        let empty = fs::read_dir(&data)
            .ctx(|| format!("read {}", bt(&data)))?
            .next()
            .is_none();
        let srcs = merged_sources(lowers, path);
        let copied = empty && !srcs.is_empty();
        if copied {
            copy_layers(&srcs, &data)?;
            let top = fs::metadata(srcs.last().expect("not empty"))
                .ctx(|| format!("stat {}", bt(srcs.last().expect("not empty"))))?;
            if rec.uid.is_none() && rec.gid.is_none() {
                std::os::unix::fs::chown(&data, Some(top.uid()), Some(top.gid()))
                    .ctx(|| format!("chown {}", bt(&data)))?;
            }
            fs::set_permissions(&data, fs::Permissions::from_mode(top.mode() & 0o7777))
                .ctx(|| format!("chmod {}", bt(&data)))?;
        }
        rec.needs_copy_up = false;
        self.write_volume_record(&rec)?;
        Ok(copied)
    }

    /// Gives volume `name` and everything in it to `uid`:`gid` (`:U`, as Podman chowns
    /// recursively). The content is the containers' (another one may be running on it), so
    /// the walk goes by directory descriptors opened `O_NOFOLLOW` and changes each entry
    /// relative to its directory without following symlinks: a directory swapped for a
    /// symlink mid-walk cannot lead it outside the volume. Setuid and setgid bits, which a
    /// chown clears, are put back.
    pub fn chown_volume(&self, name: &str, uid: u32, gid: u32) -> Result<()> {
        let data = self.volume_data(name);
        let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        let top =
            openat(AT_FDCWD, &data, WALK, Mode::empty()).ctx(|| format!("open {}", bt(&data)))?;
        fchownat(&top, ".", u, g, AtFlags::empty()).ctx(|| format!("chown {}", bt(&data)))?;
        chown_below(&top, u, g).ctx(|| format!("chown the content of {}", bt(&data)))
    }

    /// Writes the content of volume `name` to `w` as a tar (owners, modes, symlinks kept).
    pub fn export_volume(&self, name: &str, w: impl Write) -> Result<()> {
        self.volume(name)?;
        let data = self.volume_data(name);
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        b.append_dir_all(".", &data)
            .and_then(|_| b.into_inner().map(drop))
            .ctx(|| format!("write a tar of {}", bt(&data)))
    }

    /// Unpacks the tar `r` into volume `name`'s content, over what is there (as Podman's
    /// `volume import`). Entries cannot land outside `_data`.
    pub fn import_volume(&self, name: &str, r: impl Read) -> Result<()> {
        self.volume(name)?;
        let data = self.volume_data(name);
        let mut a = tar::Archive::new(r);
        a.set_preserve_permissions(true);
        a.set_preserve_ownerships(true);
        a.set_preserve_mtime(true);
        a.set_overwrite(true);
        a.unpack(&data)
            .ctx(|| format!("unpack the tar into {}", bt(&data)))
    }

    /// The bytes the files of volume `name` take (apparent sizes), for `system df`.
    pub fn volume_size(&self, name: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = fs::read_dir(p) else { return 0 };
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.volume_data(name))
    }
}

/// How a volume's directories are opened for a walk: never through a symlink.
const WALK: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Chowns every entry below the open directory `dir` (see [`Store::chown_volume`]).
fn chown_below(dir: &OwnedFd, u: Option<Uid>, g: Option<Gid>) -> nix::Result<()> {
    let names: Vec<std::ffi::CString> = Dir::openat(dir, ".", WALK, Mode::empty())?
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for n in names {
        let st = match fstatat(dir, n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        fchownat(dir, n.as_c_str(), u, g, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFDIR {
            match openat(dir, n.as_c_str(), WALK, Mode::empty()) {
                Ok(sub) => chown_below(&sub, u, g)?,
                // swapped for something else meanwhile: not ours to follow
                Err(Errno::ENOTDIR | Errno::ELOOP | Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        } else if kind == SFlag::S_IFREG && st.st_mode & 0o6000 != 0 {
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
            if let Ok(f) = openat(dir, n.as_c_str(), flags, Mode::empty()) {
                fchmod(&f, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
            }
        }
    }
    Ok(())
}

/// The directories `path` is merged from in the layers `lowers` (bottom first): a layer that
/// whites `path` (or a parent) out or replaces it by a file hides those below it, an opaque
/// directory hides those below it and still counts.
fn merged_sources(lowers: &[PathBuf], path: &str) -> Vec<PathBuf> {
    let comps: Vec<_> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect();
    let mut srcs = Vec::new();
    'layers: for l in lowers {
        let mut cur = l.clone();
        for c in &comps {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {
                    if sys::lgetxattr(&cur, "user.overlay.opaque").is_some_and(|v| v == b"y") {
                        srcs.clear();
                    }
                }
                // a whiteout, or a file or symlink in place of a directory
                Ok(_) => {
                    srcs.clear();
                    continue 'layers;
                }
                Err(_) => continue 'layers,
            }
        }
        srcs.push(cur);
    }
    srcs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdMap;

    #[test]
    fn names_follow_podman() {
        for ok in ["a", "data", "v1.2_x-y", "0abc"] {
            assert!(validate_volume_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "_a", "é"] {
            assert!(validate_volume_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_list_populate_export_import_remove() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("s"), IdMap::full()).unwrap();
        let mut rec = VolumeRecord::new("v");
        rec.labels.insert("a".into(), "b".into());
        store.create_volume(&rec).unwrap();
        assert!(matches!(
            store.create_volume(&rec),
            Err(Error::VolumeExists(_))
        ));
        assert_eq!(store.volume("v").unwrap(), rec);
        assert!(matches!(store.volume("w"), Err(Error::VolumeNotFound(_))));
        let l1 = t.path().join("l1");
        let l2 = t.path().join("l2");
        fs::create_dir_all(l1.join("etc/sub")).unwrap();
        fs::write(l1.join("etc/a"), b"a").unwrap();
        fs::create_dir_all(l2.join("etc")).unwrap();
        fs::write(l2.join("etc/b"), b"b").unwrap();
        fs::set_permissions(l2.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        assert!(store
            .populate_volume("v", &[l1.clone(), l2.clone()], "/etc", true)
            .unwrap());
        let data = store.volume_data("v");
        assert_eq!(fs::read(data.join("a")).unwrap(), b"a");
        assert_eq!(fs::read(data.join("b")).unwrap(), b"b");
        assert!(data.join("sub").is_dir());
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o7777, 0o750);
        // once only
        fs::remove_file(data.join("a")).unwrap();
        assert!(!store.populate_volume("v", &[l1], "/etc", true).unwrap());
        assert!(!data.join("a").exists());
        let mut tar = Vec::new();
        store.export_volume("v", &mut tar).unwrap();
        store.create_volume(&VolumeRecord::new("w")).unwrap();
        store.import_volume("w", &tar[..]).unwrap();
        assert_eq!(fs::read(store.volume_data("w").join("b")).unwrap(), b"b");
        let names: Vec<_> = store
            .volumes()
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["v", "w"]);
        store.remove_volume("v").unwrap();
        assert!(matches!(store.volume("v"), Err(Error::VolumeNotFound(_))));
        assert_eq!(store.volumes().unwrap().len(), 1);
    }

    #[test]
    fn a_whiteout_hides_lower_content() {
        let t = tempfile::tempdir().unwrap();
        let l1 = t.path().join("l1");
        let l2 = t.path().join("l2");
        let l3 = t.path().join("l3");
        fs::create_dir_all(l1.join("d")).unwrap();
        fs::create_dir_all(&l2).unwrap();
        fs::write(l2.join("d"), b"").unwrap();
        fs::create_dir_all(l3.join("d")).unwrap();
        assert_eq!(
            merged_sources(&[l1.clone(), l2, l3.clone()], "/d"),
            [l3.join("d")]
        );
        assert_eq!(
            merged_sources(std::slice::from_ref(&l1), "/d/"),
            [l1.join("d")]
        );
        assert!(merged_sources(&[l1], "/nope").is_empty());
    }
}
