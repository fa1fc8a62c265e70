//! Per-container layer directories under `containers/<id>/`.
//!
//! Owns `upper/` and `work/` (overlay), `rootfs/` (the copy driver's tree), each made only
//! for its driver, `empty/` and `layer.json` (which image the container uses, so `rmi` can refuse). The
//! binary keeps its own files next to them (`container.json`, `ctr.log`, `monitor.log`, the
//! /etc files; see the crate's layout), named by its `layout` module; mounting is the
//! [`crate::mount`] module's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::store::{remove_tree, Store};
use crate::{bt, Error, IoContext, Result};

/// The directories of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDir {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
    /// The image's layer directories, top-most first (overlay `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
    /// `--rootfs`: a directory of the host that is the container's only, read-only, lower
    /// layer (no image)
    pub host_root: Option<PathBuf>,
    /// `--image-file`: a squashfs image that is the container's only, read-only, lower layer,
    /// mounted at [`ContainerDir::image_mount`] (no image in the store)
    pub image_file: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ContainerLayer {
    /// none for a container of a host directory
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_id: Option<Digest>,
    #[serde(default)]
    layers: Vec<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host_root: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_file: Option<PathBuf>,
    /// where `upper/` and `work/` are, below `<this>/<id>/`, when not in the container's
    /// directory ([`Store::set_upper_root`])
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upper_root: Option<PathBuf>,
    /// images of `--mount type=image` ([`Store::mount_images`]): in use as the image is
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mounted_images: Vec<Digest>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl ContainerDir {
    /// The empty lower directory an overlay root gets when its image has no layers.
    pub fn empty_lower(&self) -> PathBuf {
        self.dir.join("empty")
    }

    /// Where an `--image-file` container's squashfs image is mounted, in its own mount
    /// namespace only.
    pub fn image_mount(&self) -> PathBuf {
        self.dir.join("image")
    }

    /// The read-only lower directories of the container's overlay root, top-most first: the
    /// host directory of `--rootfs`, the mount point of `--image-file`, the image's layers,
    /// or [`ContainerDir::empty_lower`] for an image without layers (overlayfs needs one;
    /// [`Store::rootfs`] creates it). One answer for the mount and for `inspect`.
    pub fn overlay_lowers(&self) -> Vec<PathBuf> {
        match (&self.host_root, &self.image_file) {
            (Some(host), _) => vec![host.clone()],
            (None, Some(_)) => vec![self.image_mount()],
            (None, None) if self.lower_dirs.is_empty() => vec![self.empty_lower()],
            (None, None) => self.lower_dirs.clone(),
        }
    }
}

impl Store {
    fn container_path(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(Error::ContainerNotFound(id.to_string()));
        }
        Ok(self.containers_dir().join(id))
    }

    /// Creates `containers/<id>/` with layer.json for an image; the storage driver then
    /// makes the directories it uses ([`Store::prepare_rootfs`]).
    /// The image lock (shared) is held meanwhile, so a concurrent `rmi` either sees this
    /// container or has already removed the image (then this fails with ImageNotFound).
    pub fn create_container_dir(&self, id: &str, image_id: &Digest) -> Result<ContainerDir> {
        let dir = self.container_path(id)?;
        let _g = self.lock_shared(&format!("image-{}", image_id.hex()))?;
        let rec = self.lookup_image(&image_id.to_string())?;
        for l in &rec.layers {
            if !self.has_layer_anywhere(&l.diff_id) {
                return Err(Error::LayerNotFound(l.diff_id.clone()));
            }
        }
        // Build in tmp/, then rename: a container dir is either complete or absent.
        let tmp = self.tmp_path("container");
        fs::create_dir(&tmp.path).ctx(|| format!("create {}", bt(&tmp.path)))?;
        let meta = ContainerLayer {
            image_id: Some(rec.id.clone()),
            layers: rec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            host_root: None,
            image_file: None,
            upper_root: self.placed_upper_root(id)?,
            mounted_images: Vec::new(),
        };
        self.commit_container_dir(id, tmp, dir, meta)
    }

    /// Creates `containers/<id>/` for a container whose root is the squashfs image `file`
    /// (absolute), mounted without unpacking and overlaid: the file is never written.
    pub fn create_file_container_dir(&self, id: &str, file: &Path) -> Result<ContainerDir> {
        let dir = self.container_path(id)?;
        let tmp = self.tmp_path("container");
        let mount_point = tmp.path.join("image");
        fs::create_dir_all(&mount_point).ctx(|| format!("create {}", bt(&mount_point)))?;
        let meta = ContainerLayer {
            image_id: None,
            layers: Vec::new(),
            host_root: None,
            image_file: Some(file.to_path_buf()),
            upper_root: self.placed_upper_root(id)?,
            mounted_images: Vec::new(),
        };
        self.commit_container_dir(id, tmp, dir, meta)
    }

    /// Creates `containers/<id>/` for a container whose root is the host directory
    /// `host_root` (absolute), overlaid: the directory itself is never written.
    pub fn create_host_container_dir(&self, id: &str, host_root: &Path) -> Result<ContainerDir> {
        let dir = self.container_path(id)?;
        let tmp = self.tmp_path("container");
        fs::create_dir(&tmp.path).ctx(|| format!("create {}", bt(&tmp.path)))?;
        let meta = ContainerLayer {
            image_id: None,
            layers: Vec::new(),
            host_root: Some(host_root.to_path_buf()),
            image_file: None,
            upper_root: self.placed_upper_root(id)?,
            mounted_images: Vec::new(),
        };
        self.commit_container_dir(id, tmp, dir, meta)
    }

    fn commit_container_dir(
        &self,
        id: &str,
        tmp: crate::store::TmpPath,
        dir: PathBuf,
        meta: ContainerLayer,
    ) -> Result<ContainerDir> {
        let p = tmp.path.join("layer.json");
        fs::write(
            &p,
            serde_json::to_vec_pretty(&meta).expect("container layer serializes"),
        )
        .ctx(|| format!("write {}", bt(&p)))?;
        match fs::rename(&tmp.path, &dir) {
            Ok(()) => tmp.keep(),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
                return Err(Error::ContainerExists(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("create {}", bt(&dir)), e)),
        }
        let cd = self.container_dir_of(dir, &meta);
        known::remember(self.root(), id, &cd);
        Ok(cd)
    }

    /// With an upper root set, makes `<upper root>/<id>/` (fresh, 0700) for the container's
    /// upper and work directories and returns the root to record.
    fn placed_upper_root(&self, id: &str) -> Result<Option<PathBuf>> {
        use std::os::unix::fs::DirBuilderExt;
        let Some(root) = self.upper_root() else {
            return Ok(None);
        };
        let mut b = fs::DirBuilder::new();
        b.mode(0o700).recursive(true);
        b.create(root).ctx(|| format!("create {}", bt(root)))?;
        let mine = root.join(id);
        let _ = remove_tree(&mine);
        b.recursive(false)
            .create(&mine)
            .ctx(|| format!("create {}", bt(&mine)))?;
        Ok(Some(root.to_path_buf()))
    }

    fn container_dir_of(&self, dir: PathBuf, meta: &ContainerLayer) -> ContainerDir {
        let id = dir.file_name().map(PathBuf::from).unwrap_or_default();
        let place = match &meta.upper_root {
            Some(r) => r.join(id),
            None => dir.clone(),
        };
        ContainerDir {
            upper: place.join("upper"),
            work: place.join("work"),
            rootfs: dir.join("rootfs"),
            lower_dirs: meta
                .layers
                .iter()
                .rev()
                .map(|d| self.layer_path(d))
                .collect(),
            host_root: meta.host_root.clone(),
            image_file: meta.image_file.clone(),
            dir,
        }
    }

    /// The directories of an existing container.
    pub fn container_dir(&self, id: &str) -> Result<ContainerDir> {
        if let Some(cd) = known::recall(self.root(), id) {
            return Ok(cd);
        }
        let dir = self.container_path(id)?;
        let p = dir.join("layer.json");
        let data = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::ContainerNotFound(id.to_string())
            } else {
                Error::io(format!("read {}", bt(&p)), e)
            }
        })?;
        let meta: ContainerLayer = serde_json::from_slice(&data)
            .map_err(|e| Error::io(format!("parse {}", bt(&p)), io::Error::other(e)))?;
        let cd = self.container_dir_of(dir, &meta);
        known::remember(self.root(), id, &cd);
        Ok(cd)
    }

    /// `--mount type=image`: the layer directories (top-most first) of image `image`,
    /// recorded in container `id`'s layer.json so that `rmi` refuses it while the container
    /// exists, as it refuses the container's own image. The image's lock is held (shared)
    /// meanwhile, as in [`Store::create_container_dir`].
    pub fn mount_image(&self, id: &str, image: &Digest) -> Result<Vec<PathBuf>> {
        let dir = self.container_path(id)?;
        let p = dir.join("layer.json");
        let data = fs::read(&p).ctx(|| format!("read {}", bt(&p)))?;
        let mut meta: ContainerLayer = serde_json::from_slice(&data)
            .map_err(|e| Error::io(format!("parse {}", bt(&p)), io::Error::other(e)))?;
        let _g = self.lock_shared(&format!("image-{}", image.hex()))?;
        let rec = self.lookup_image(&image.to_string())?;
        let mut dirs = Vec::new();
        for l in rec.layers.iter().rev() {
            if !self.has_layer_anywhere(&l.diff_id) {
                return Err(Error::LayerNotFound(l.diff_id.clone()));
            }
            dirs.push(self.layer_path(&l.diff_id));
        }
        known::forget(self.root(), id);
        if !meta.mounted_images.contains(image) {
            meta.mounted_images.push(image.clone());
            self.write_atomic(
                &p,
                &serde_json::to_vec_pretty(&meta).expect("container layer serializes"),
            )?;
        }
        Ok(dirs)
    }

    /// Removes a container's directory (upper layer included). Missing is not an error.
    pub fn remove_container_dir(&self, id: &str) -> Result<()> {
        match self.detach_container_dir(id)? {
            Some(d) => self.remove_detached(d, false),
            None => Ok(()),
        }
    }

    /// Makes a container's directory disappear at once (one rename into `tmp/`; a node-local
    /// upper part is removed first, while layer.json says where it is), leaving the deletion
    /// of its files to [`Store::remove_detached`], now or in another process. `None`: there
    /// was no directory. Not deleted at all (its process killed), the entry goes with the
    /// next writer's sweep of `tmp/`.
    pub fn detach_container_dir(&self, id: &str) -> Result<Option<Detached>> {
        let dir = self.container_path(id)?;
        let cd = self.container_dir(id);
        known::forget(self.root(), id);
        if let Ok(cd) = cd {
            if let Some(placed) = cd.upper.parent().filter(|p| *p != dir) {
                remove_tree(placed).ctx(|| format!("remove {}", bt(placed)))?;
            }
        }
        let tmp = self.tmp_path("rmcontainer");
        match fs::rename(&dir, &tmp.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("remove {}", bt(&dir)), e)),
        }
        let path = tmp.path.clone();
        tmp.keep();
        Ok(Some(Detached(path)))
    }

    /// Deletes what [`Store::detach_container_dir`] moved away. `adopt`: this process is
    /// not the one that detached it (a child left to delete it after its parent exits): the
    /// entry is first renamed to this process's stamp, so that other invocations' sweeps of
    /// `tmp/` leave it to this one.
    pub fn remove_detached(&self, d: Detached, adopt: bool) -> Result<()> {
        self.remover().remove(d, adopt)
    }

    /// What [`Store::remove_detached`] needs, owned: for a process that outlives this
    /// handle (see rbox's `sys::after_exit`).
    pub fn remover(&self) -> Remover {
        Remover {
            tmp: self.tmp_root(),
        }
    }

    /// Ids of the containers whose dir references `image_id`.
    pub fn containers_using(&self, image_id: &Digest) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.containers_dir()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let Ok(data) = fs::read(ent.path().join("layer.json")) else {
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<ContainerLayer>(&data) else {
                continue;
            };
            if meta.image_id.as_ref() == Some(image_id) || meta.mounted_images.contains(image_id) {
                if let Some(n) = ent.file_name().to_str() {
                    out.push(n.to_string());
                }
            }
        }
        out.sort();
        out
    }
}

/// Deletes detached container directories ([`Store::remover`]).
#[derive(Debug)]
pub struct Remover {
    tmp: PathBuf,
}

impl Remover {
    /// [`Store::remove_detached`].
    pub fn remove(&self, d: Detached, adopt: bool) -> Result<()> {
        let mut path = d.0;
        if adopt {
            let own = crate::store::stamped_tmp_path(&self.tmp, "rmcontainer");
            if fs::rename(&path, &own).is_ok() {
                path = own;
            }
        }
        remove_tree(&path).ctx(|| format!("remove {}", bt(&path)))
    }
}

/// A container directory moved out of the way, its files not yet deleted
/// ([`Store::detach_container_dir`]).
#[derive(Debug)]
pub struct Detached(PathBuf);

/// The container directories this process created or read, by store and id: a start asks for
/// its container's several times (the monitor, the launch plan, and at the exit the removal),
/// and what layer.json says of a container does not change while it exists, except through
/// this process (`--mount type=image` at create, which forgets it; a removal forgets it too).
/// Another process that removes the container meanwhile is seen where its files are used.
mod known {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use super::ContainerDir;

    static KNOWN: Mutex<Vec<(PathBuf, String, ContainerDir)>> = Mutex::new(Vec::new());
    /// Set when a [`forget`] found the lock held: nothing is recalled any more.
    static UNSURE: AtomicBool = AtomicBool::new(false);
    /// A few are all a process uses (a build's step containers come and go).
    const KEPT: usize = 8;

    /// The lock, or none where it is held ([`crate::lock_now`]): then nothing is known.
    fn known() -> Option<std::sync::MutexGuard<'static, Vec<(PathBuf, String, ContainerDir)>>> {
        crate::lock_now(&KNOWN)
    }

    pub(super) fn recall(root: &Path, id: &str) -> Option<ContainerDir> {
        if UNSURE.load(Ordering::SeqCst) {
            return None;
        }
        known()?
            .iter()
            .find(|(r, i, _)| r == root && i == id)
            .map(|(_, _, cd)| cd.clone())
    }

    pub(super) fn remember(root: &Path, id: &str, cd: &ContainerDir) {
        if let Some(mut k) = known() {
            k.retain(|(r, i, _)| !(r == root && i == id));
            if k.len() >= KEPT {
                k.remove(0);
            }
            k.push((root.to_path_buf(), id.to_string(), cd.clone()));
        }
    }

    pub(super) fn forget(root: &Path, id: &str) {
        match known() {
            Some(mut k) => k.retain(|(r, i, _)| !(r == root && i == id)),
            None => UNSURE.store(true, Ordering::SeqCst),
        }
    }
}
