//! Storage drivers: how a container's root filesystem is assembled from its image's layers.
//!
//! Owns the [`Driver`] choice as a type, the driver-specific preparation of a container
//! directory ([`Store::prepare_rootfs`], at create time) and the description of the root
//! ([`Rootfs`], at start) that the container's setup mounts, plus the overlay probe's memo
//! and scratch paths. It does not own when and in which process things are mounted: the
//! `rbox` binary puts a [`Rootfs`] into its mount plan and executes that plan in the
//! container's own mount namespace, and it forks the overlay probe's child.
//!
//! - [`overlay`]: kernel overlayfs, the image layers as lower directories and the container's
//!   `upper/` and `work/` above (mounted through the new mount API, no option-length limit).
//! - [`copy`]: the image layers copied into `rootfs/` once, bind-mounted at start. Podman
//!   calls it `vfs`, and so do `--storage-driver` and container records.
//! - [`fuse`]: rbox's own overlay filesystem on FUSE, over the same layers and upper/work
//!   directories as [`overlay`], served by a process of the container (`fuse-overlay`).
//! - [`squash`]: a squashfs image file (`--image-file`) served by squashfuse as the only
//!   lower layer of either overlay.

pub mod copy;
pub mod fuse;
pub mod host;
pub mod overlay;
pub mod squash;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};

use crate::container::ContainerDir;
use crate::store::Store;
use crate::{bt, Error, IoContext, Result};

/// A storage driver. Its name (`Display`, and in records) is Podman's: `overlay` or `vfs`;
/// `copy` is accepted as another name of [`Driver::Copy`]. `fuse-overlay` is rbox's own FUSE
/// overlay ([`fuse`]), for hosts where kernel overlayfs cannot be mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Driver {
    /// kernel overlayfs
    #[serde(rename = "overlay")]
    Overlay,
    /// a private copy of the layers (Podman's `vfs`)
    #[serde(rename = "vfs", alias = "copy")]
    Copy,
    /// rbox's FUSE overlay over the same layers as [`Driver::Overlay`]
    #[serde(rename = "fuse-overlay")]
    FuseOverlay,
}

impl Driver {
    /// The name written in records and shown by `inspect` and `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Copy => "vfs",
            Driver::FuseOverlay => "fuse-overlay",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--storage-driver` value that names no driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage driver `{0}`: use overlay, fuse-overlay or vfs")]
pub struct UnknownDriver(pub String);

impl FromStr for Driver {
    type Err = UnknownDriver;

    fn from_str(s: &str) -> std::result::Result<Driver, UnknownDriver> {
        match s {
            "overlay" => Ok(Driver::Overlay),
            "vfs" | "copy" => Ok(Driver::Copy),
            "fuse-overlay" => Ok(Driver::FuseOverlay),
            _ => Err(UnknownDriver(s.to_string())),
        }
    }
}

/// How a container's root filesystem is mounted: a plain description, built before the
/// container is cloned and mounted by its setup ([`Rootfs::mount`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// kernel overlayfs: image layers (topmost first) below, the container's upper/work above
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        /// skip the fsyncs of the upper layer (a container removed on exit)
        volatile: bool,
    },
    /// an already populated directory (the copy driver), bind-mounted
    Dir(PathBuf),
    /// the FUSE overlay: the same layers as `Overlay`, served by rbox's own server
    Fuse {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        /// the owners shifted for the container's nested user namespace (keep-id)
        shift: Option<fuse::shift::IdShift>,
    },
    /// `--image-file`: a squashfs image mounted by squashfuse at `lower` ([`squash`]), under
    /// kernel overlay, or under the FUSE overlay when `fuse`
    ImageFile {
        file: PathBuf,
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        volatile: bool,
        fuse: bool,
    },
    /// `--rootfs`: a host directory, overlaid ([`host::mount`])
    Host {
        dir: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        volatile: bool,
    },
}

impl Rootfs {
    /// Mounts the root at `target`, in the calling process's mount namespace.
    pub fn mount(&self, target: &Path) -> Result<()> {
        match self {
            Rootfs::Overlay {
                lowers,
                upper,
                work,
                volatile,
            } => overlay::mount(lowers, upper, work, *volatile, target),
            Rootfs::Host {
                dir,
                upper,
                work,
                volatile,
            } => host::mount(dir, upper, work, *volatile, target),
            Rootfs::Fuse {
                lowers,
                upper,
                work,
                shift,
            } => fuse::mount(lowers, upper, work, target, shift.as_ref()),
            Rootfs::ImageFile {
                file,
                lower,
                upper,
                work,
                volatile,
                fuse,
            } => {
                squash::mount_file(file, lower)?;
                let lowers = std::slice::from_ref(lower);
                if *fuse {
                    fuse::mount(lowers, upper, work, target, None)
                } else {
                    overlay::mount(lowers, upper, work, *volatile, target)
                }
            }
            Rootfs::Dir(d) => mount(
                Some(d.as_path()),
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| {
                Error::io(
                    format!("bind onto {}", bt(target)),
                    std::io::Error::other(e),
                )
            }),
        }
    }
}

impl Store {
    /// The driver's part of creating a container: overlay makes `upper/` and `work/`; the
    /// copy driver copies the image's layers into `rootfs/` (bottom layer first). Only what
    /// the driver uses is made: every directory is an inode to allocate at each `run`.
    pub fn prepare_rootfs(&self, driver: Driver, dir: &ContainerDir) -> Result<()> {
        match driver {
            Driver::Overlay | Driver::FuseOverlay => {
                for p in [&dir.upper, &dir.work] {
                    fs::create_dir(p).ctx(|| format!("create {}", bt(p)))?;
                }
                // overlayfs shows the upper directory's own mode as the root's
                set_root_mode(dir, &dir.upper)
            }
            Driver::Copy => {
                let bottom_first: Vec<PathBuf> = dir.lower_dirs.iter().rev().cloned().collect();
                copy::copy_layers(&bottom_first, &dir.rootfs)?;
                set_root_mode(dir, &dir.rootfs)
            }
        }
    }

    /// The root filesystem of a container made by `driver`, ready to mount. `volatile` (for
    /// a container removed on exit) lets overlay skip syncing the upper layer. An image
    /// without layers gets one empty lower directory: overlayfs needs at least one.
    pub fn rootfs(&self, driver: Driver, dir: &ContainerDir, volatile: bool) -> Result<Rootfs> {
        if let Some(file) = &dir.image_file {
            if driver == Driver::Copy {
                return Err(Error::io(
                    format!("use {} as the root filesystem", bt(file)),
                    std::io::Error::other(
                        "an image file needs the overlay or fuse-overlay driver, not vfs: it is never unpacked",
                    ),
                ));
            }
            return Ok(Rootfs::ImageFile {
                file: file.clone(),
                lower: dir.image_mount(),
                upper: dir.upper.clone(),
                work: dir.work.clone(),
                volatile,
                fuse: driver == Driver::FuseOverlay,
            });
        }
        if let Some(host) = &dir.host_root {
            if driver == Driver::Copy {
                return Err(Error::io(
                    format!("use {} as the root filesystem", bt(host)),
                    std::io::Error::other(
                        "a host directory needs the overlay driver, not vfs: it is never copied",
                    ),
                ));
            }
            return Ok(Rootfs::Host {
                dir: host.clone(),
                upper: dir.upper.clone(),
                work: dir.work.clone(),
                volatile,
            });
        }
        match driver {
            Driver::Copy => Ok(Rootfs::Dir(dir.rootfs.clone())),
            Driver::FuseOverlay => Ok(Rootfs::Fuse {
                lowers: dir.lower_dirs.clone(),
                upper: dir.upper.clone(),
                work: dir.work.clone(),
                shift: None,
            }),
            Driver::Overlay => {
                let lowers = dir.overlay_lowers();
                if dir.lower_dirs.is_empty() {
                    let empty = dir.empty_lower();
                    fs::create_dir_all(&empty).ctx(|| format!("create {}", bt(&empty)))?;
                }
                Ok(Rootfs::Overlay {
                    lowers,
                    upper: dir.upper.clone(),
                    work: dir.work.clone(),
                    volatile,
                })
            }
        }
    }
}

/// The mount points every container's runtime mounts on, below an image's layers
/// ([`Store::mount_points_layer`]): directories, and empty files for the /etc files it binds.
const MOUNT_POINTS: &[(&str, bool)] = &[
    ("dev", true),
    ("proc", true),
    ("sys", true),
    ("etc", true),
    ("etc/hosts", false),
    ("etc/hostname", false),
    ("etc/resolv.conf", false),
];

impl Store {
    /// `mount-points/`: a read-only lower layer of [`MOUNT_POINTS`], made once per store,
    /// that the runtime puts below the image layers of an overlay root it starts (not of one
    /// mounted for `cp`, `export` or `mount`, which show no mount points, as Podman's). An image that lacks one of them (busybox
    /// has no /proc, Debian no /etc/hosts) would otherwise have it made in each container's
    /// upper directory at each start, a directory copied up with it: inodes created on the
    /// store's file system (and deleted with the container) on the path to the command. The
    /// image's own entries hide these (a lower layer below all of them), so what the
    /// container sees is the same; its upper directory, and so `commit` and `diff`, no
    /// longer holds the empty mount points.
    ///
    /// `hosts`: with `etc/hosts` (`--no-hosts` leaves the image's own, or none: then the
    /// container must not see an empty one; `mount-points-no-hosts/` lacks it).
    pub fn mount_points_layer(&self, hosts: bool) -> Result<PathBuf> {
        let name = if hosts {
            "mount-points"
        } else {
            "mount-points-no-hosts"
        };
        let dir = self.root().join(name);
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self.tmp_path(name);
        fs::create_dir(&tmp.path).ctx(|| format!("create {}", bt(&tmp.path)))?;
        for (rel, is_dir) in MOUNT_POINTS
            .iter()
            .filter(|(p, _)| hosts || *p != "etc/hosts")
        {
            let p = tmp.path.join(rel);
            if *is_dir {
                fs::create_dir(&p).ctx(|| format!("create {}", bt(&p)))?;
            } else {
                fs::File::create(&p).ctx(|| format!("create {}", bt(&p)))?;
            }
        }
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [tmp.path.clone(), tmp.path.join("etc")] {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                    .ctx(|| format!("set the mode of {}", bt(&p)))?;
            }
        }
        match fs::rename(&tmp.path, &dir) {
            Ok(()) => Ok(dir),
            // another process made it first
            Err(_) if dir.is_dir() => Ok(dir),
            Err(e) => Err(Error::io(format!("create {}", bt(&dir)), e)),
        }
    }
}

/// Give a container's root `root` the mode of its topmost layer's root (the layer's own
/// `./` entry, or [`crate::layer::ROOT_MODE`]).
fn set_root_mode(dir: &ContainerDir, root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match dir.lower_dirs.first() {
        Some(top) => {
            fs::metadata(top)
                .ctx(|| format!("read {}", bt(top)))?
                .permissions()
                .mode()
                & 0o7777
        }
        None => crate::layer::ROOT_MODE,
    };
    fs::set_permissions(root, fs::Permissions::from_mode(mode))
        .ctx(|| format!("set the mode of {}", bt(root)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flag_values() {
        assert_eq!("overlay".parse::<Driver>(), Ok(Driver::Overlay));
        assert_eq!("vfs".parse::<Driver>(), Ok(Driver::Copy));
        assert_eq!("copy".parse::<Driver>(), Ok(Driver::Copy));
        let e = "btrfs".parse::<Driver>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown storage driver `btrfs`: use overlay, fuse-overlay or vfs"
        );
        assert!("Overlay".parse::<Driver>().is_err());
    }

    #[test]
    fn names_are_podmans() {
        assert_eq!(Driver::Overlay.to_string(), "overlay");
        assert_eq!(Driver::Copy.to_string(), "vfs");
        for d in [Driver::Overlay, Driver::Copy, Driver::FuseOverlay] {
            assert_eq!(d.to_string().parse::<Driver>(), Ok(d));
        }
    }

    #[test]
    fn records_keep_their_spelling() {
        // records written before the enum hold "overlay" or "vfs"; new ones must read the same
        assert_eq!(
            serde_json::to_string(&Driver::Overlay).unwrap(),
            "\"overlay\""
        );
        assert_eq!(serde_json::to_string(&Driver::Copy).unwrap(), "\"vfs\"");
        for (text, d) in [
            ("\"overlay\"", Driver::Overlay),
            ("\"vfs\"", Driver::Copy),
            ("\"copy\"", Driver::Copy),
        ] {
            assert_eq!(serde_json::from_str::<Driver>(text).unwrap(), d);
        }
        assert!(serde_json::from_str::<Driver>("\"fuse\"").is_err());
    }
}
