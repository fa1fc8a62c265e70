//! `rbox mount` / `rbox unmount` (and `container mount/unmount`): a container's root
//! filesystem mounted at `<runtime dir>/mounts/<id>/merged` for the host to read and write,
//! as `podman mount` does. Rootless, a mount needs a mount namespace owned by rbox's user
//! namespace: the one `rbox unshare` gives its command (Podman refuses outside `podman
//! unshare` in the same words). The list of mounted containers is read from this process's
//! own mount table, so it is what the caller's namespace really has.
//!
//! A root that needs a server (the FUSE overlay; an `--image-file`'s squashfs, under either
//! overlay driver) is served by a detached FUSE server that lives exactly as long as the
//! mount (rbox_storage::mount::fuse::detached): until `rbox unmount`, `umount`, or the end of
//! the `rbox unshare` whose namespace holds it. Only while the container is stopped: a
//! running one has its own server on the same upper directory, and `rbox start` refuses a
//! mounted one (runtime::mounted) for the same reason. What a user sees there: the owners
//! on disk, which are the image's own ids (the numbers the container shows, keep-id, nomap
//! and auto included); under a single-id map the files of other owners show as the one id
//! (root), with their own modes, as the container's kernel sees them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::targets::Latest;
use crate::cli::complete;
use crate::context::Context;
use crate::runtime::{self, userns};
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// Mount every container and print each one's path (the list then takes no --format)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not truncate the ids in the list of mounted containers
    #[arg(long = "no-trunc", visible_alias = "notruncate")]
    pub notruncate: bool,
    #[command(flatten)]
    pub latest: Latest,
    /// Print the list of mounted containers as json (the one format Podman takes)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Containers to mount (names or ids); none lists the mounted ones
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UnmountArgs {
    /// Unmount every mounted container
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Unmount even when the mount is busy (lazily)
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub latest: Latest,
    /// Containers to unmount (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

/// Podman's refusal outside its user namespace, for `verb` (`rbox mount`).
pub fn refuse_outside(verb: &str) -> Result<()> {
    // real root mounts in the host's namespace; a user only inside rbox's
    if !(nix::unistd::geteuid().is_root() || userns::inside_rbox()) {
        bail!("cannot run command \"{verb}\" in rootless mode, must execute `rbox unshare` first");
    }
    Ok(())
}

fn target(g: &Context, id: &str) -> Result<PathBuf> {
    Ok(runtime::mounted::dir(g, id)?.join("merged"))
}

/// The mount points in this process's mount namespace (field 5 of mountinfo, unescaped).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ").replace("\\011", "\t")))
        .collect()
}

/// One entry of `mount --format json`, with Podman's keys in Podman's order.
#[derive(serde::Serialize)]
struct Mounted {
    id: String,
    #[serde(rename = "Names")]
    names: [String; 1],
    mountpoint: PathBuf,
}

pub fn mount(g: &Context, a: MountArgs) -> Result<ExitCode> {
    refuse_outside("rbox mount")?;
    if a.containers.is_empty() && !a.latest.latest && !a.all {
        if let Some(f) = a.format.as_deref().filter(|f| *f != "json") {
            // Podman's words
            bail!("unknown --format argument: \"{f}\"");
        }
        let points = mount_points();
        let mut listed = Vec::new();
        // oldest first, as Podman lists them
        for rec in state::list(g)?.into_iter().rev() {
            let t = target(g, &rec.id)?;
            if !points.contains(&t) {
                continue;
            }
            if a.format.is_some() {
                listed.push(Mounted {
                    id: rec.id.clone(),
                    names: [rec.name.clone()],
                    mountpoint: t,
                });
                continue;
            }
            let id = if a.notruncate {
                &rec.id[..]
            } else {
                &rec.id[..12]
            };
            println!("{id}  {}", t.display());
        }
        if a.format.is_some() {
            println!("{}", crate::format::pretty_json_indented(&listed, b" "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let names = a.latest.names(g, &a.containers, a.all, false)?;
    let recs = if a.all {
        // oldest first, the order Podman mounts and prints them in
        let mut all = state::list(g)?;
        all.reverse();
        all
    } else {
        names
            .iter()
            .map(|c| state::lookup(g, c))
            .collect::<Result<Vec<_>>>()?
    };
    let store = runtime::open_store(g)?;
    let points = mount_points();
    // each in turn, going on after one that fails (a running one on the FUSE overlay among
    // `--all`), every error at the end
    let mut errors = Vec::new();
    for rec in recs {
        let mounted = (|| -> Result<PathBuf> {
            let t = target(g, &rec.id)?;
            if !points.contains(&t) {
                std::fs::create_dir_all(&t).with_context(|| format!("create `{}`", t.display()))?;
                let dir = store.container_dir(&rec.id)?;
                if rec.driver == rbox_storage::Driver::FuseOverlay || rec.image_file.is_some() {
                    mount_served(g, &rec, &dir, &t)?;
                } else {
                    store
                        .rootfs(rec.driver, &dir, false)?
                        .mount(&t)
                        .with_context(|| format!("mount container {}", rec.name))?;
                }
            }
            Ok(t)
        })();
        match mounted {
            Ok(t) => println!("{}", t.display()),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// A root that needs a server (the FUSE overlay, an image file's squashfuse) mounted at `t`
/// by a detached FUSE server of its own (rbox_storage::mount::fuse::detached), recorded for
/// `rbox start` and `rbox rm` (runtime::mounted). Refused while the container runs: its own
/// server serves the same upper directory, and two servers would each keep in the kernel's
/// caches what the other changes.
fn mount_served(
    g: &Context,
    rec: &state::ContainerRecord,
    dir: &rbox_storage::ContainerDir,
    t: &Path,
) -> Result<()> {
    use rbox_storage::mount::fuse::detached;
    if state::is_running(rec) {
        let _ = std::fs::remove_dir(t);
        bail!(
            "mount container {}: it runs on the FUSE overlay, whose server caches its files: \
             a second server would see stale files; stop it first, or use `rbox cp` or `rbox exec`",
            rec.name
        );
    }
    if let Some(pid) = runtime::mounted::server(g, &rec.id) {
        // (`t` stays: removing a mount point of another namespace would unmount it there)
        bail!(
            "mount container {}: it is mounted in another namespace (FUSE server pid {pid}): \
             unmount it there first, or use that `rbox unshare`",
            rec.name
        );
    }
    let lower = dir.image_mount();
    if rec.image_file.is_some() {
        std::fs::create_dir_all(&lower).with_context(|| format!("create `{}`", lower.display()))?;
    }
    let root = detached::Detached {
        lowers: &dir.lower_dirs,
        upper: &dir.upper,
        work: &dir.work,
        shift: None,
        squash: rec.image_file.as_deref().map(|f| (f, lower.as_path())),
    };
    let pid = detached::mount(&root, t).with_context(|| format!("mount container {}", rec.name))?;
    runtime::mounted::record(g, &rec.id, pid)
}

/// Before `rbox rm` forgets `rec`: unmounts its `rbox mount` where this namespace has it,
/// removes the mount point (which detaches a mount of another namespace on it, since Linux
/// 3.18), and ends a server that still serves it (one kept busy there).
pub fn release(g: &Context, rec: &state::ContainerRecord) {
    let Ok(t) = target(g, &rec.id) else {
        return;
    };
    if mount_points().contains(&t) {
        let _ = nix::mount::umount2(&t, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(&t);
    runtime::mounted::end(g, &rec.id);
    if let Some(p) = t.parent() {
        let _ = std::fs::remove_dir(p);
    }
}

pub fn unmount(g: &Context, a: UnmountArgs) -> Result<ExitCode> {
    let names = a.latest.names(g, &a.containers, a.all, false)?;
    let points = mount_points();
    let recs = if a.all {
        // oldest first, as Podman unmounts them
        state::list(g)?
            .into_iter()
            .rev()
            .filter(|r| target(g, &r.id).is_ok_and(|t| points.contains(&t)))
            .map(|r| (r.id.clone(), r))
            .collect::<Vec<_>>()
    } else {
        names
            .iter()
            .map(|c| state::lookup(g, c).map(|r| (c.clone(), r)))
            .collect::<Result<Vec<_>>>()?
    };
    for (shown, rec) in recs {
        let t = target(g, &rec.id)?;
        if points.contains(&t) {
            use nix::mount::{umount2, MntFlags};
            // -f detaches a busy mount lazily; one that is not busy goes at once either way
            let lazy = match umount2(&t, MntFlags::empty()) {
                Ok(()) => false,
                Err(nix::errno::Errno::EBUSY) if a.force => {
                    umount2(&t, MntFlags::MNT_DETACH)
                        .with_context(|| format!("unmount `{}`", t.display()))?;
                    true
                }
                Err(e) => return Err(e).with_context(|| format!("unmount `{}`", t.display())),
            };
            let _ = std::fs::remove_dir(&t);
            // a FUSE server ends with its mount's last reference: at once after an unmount
            // (waited for, so that `start` right after works), later after a lazy one (its
            // record then keeps `start` refused until it ends)
            let wait = if lazy {
                Duration::ZERO
            } else {
                Duration::from_secs(5)
            };
            runtime::mounted::forget_ended(g, &rec.id, wait);
        }
        println!("{shown}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImageMountArgs {
    /// Mount every image, then list the mounted ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print the mounted images as json (the one format Podman takes)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Images to mount (names or ids), read-only; none lists the mounted ones
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub images: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImageUnmountArgs {
    /// Unmount every mounted image
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Unmount even when the mount is busy (lazily)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Images to unmount (names or ids)
    #[arg(value_name = "IMAGE", required_unless_present = "all",
          add = complete::image_candidates())]
    pub images: Vec<String>,
}

/// Where `rbox image mount` mounts the image `hex` (its id without `sha256:`): beside it its
/// empty upper and work directories, which the read-only mount never writes.
fn image_target(g: &Context, hex: &str) -> Result<PathBuf> {
    Ok(g.runtime_dir()?
        .join("image-mounts")
        .join(hex)
        .join("merged"))
}

/// One entry of `image mount --format json`, with Podman's keys in Podman's order: under
/// "Names" Podman puts the image's manifest digest, its names go under "Repositories".
#[derive(serde::Serialize)]
struct MountedImage {
    id: String,
    #[serde(rename = "Names")]
    digest: [String; 1],
    #[serde(rename = "Repositories")]
    names: Vec<String>,
    mountpoint: PathBuf,
}

/// `rbox image mount`: an image's layers as a read-only overlay, as `podman image mount` (in
/// `rbox unshare` when rootless); without images, the mounted ones with their paths; with
/// `--all`, every image mounted, then listed as without images.
pub fn image_mount(g: &Context, a: ImageMountArgs) -> Result<ExitCode> {
    refuse_outside("rbox image mount")?;
    if let Some(f) = a.format.as_deref().filter(|f| *f != "json") {
        // Podman's words
        bail!("unknown --format argument: \"{f}\"");
    }
    if a.all && !a.images.is_empty() {
        // Podman's words
        bail!("when using the --all switch, you may not pass any image names or IDs");
    }
    let store = runtime::open_store(g)?;
    let mut points = mount_points();
    let imgs = if a.all {
        store.images()?
    } else {
        named_images(&store, &a.images)?
    };
    let mut shown = Vec::new();
    for img in imgs {
        let t = image_target(g, img.id.hex())?;
        if !points.contains(&t) {
            mount_image(&store, &img, &t)
                .with_context(|| format!("mount image {}", img.id.hex()))?;
            points.push(t.clone());
        }
        if a.images.is_empty() {
            continue;
        }
        if a.format.is_none() {
            println!("{}", t.display());
        }
        shown.push((img, t));
    }
    if a.images.is_empty() {
        // the listing: every image mounted in this namespace
        for img in store.images()? {
            let t = image_target(g, img.id.hex())?;
            if points.contains(&t) {
                shown.push((img, t));
            }
        }
        if a.format.is_none() {
            let name = |img: &rbox_storage::ImageRecord| {
                img.names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| img.id.hex().to_string())
            };
            let width = shown.iter().map(|(i, _)| name(i).len()).max().unwrap_or(0);
            for (img, t) in &shown {
                println!("{:<width$}  {}", name(img), t.display());
            }
        }
    }
    if a.format.is_some() {
        let listed: Vec<_> = shown
            .into_iter()
            .map(|(img, t)| MountedImage {
                id: img.id.hex().to_string(),
                digest: [img.digest.to_string()],
                names: img.names,
                mountpoint: t,
            })
            .collect();
        println!("{}", crate::format::pretty_json_indented(&listed, b" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Mount `img`'s layers at `t`: kernel overlay (an upper is required for a single layer, so
/// there is an empty one) made read-only.
fn mount_image(
    store: &rbox_storage::Store,
    img: &rbox_storage::ImageRecord,
    t: &Path,
) -> Result<()> {
    let dir = t.parent().context("image mount point has no parent")?;
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [t, &upper, &work] {
        std::fs::create_dir_all(d).with_context(|| format!("create `{}`", d.display()))?;
    }
    let mut lowers: Vec<PathBuf> = img
        .layers
        .iter()
        .rev()
        .map(|l| store.layer_path(&l.diff_id))
        .collect();
    if lowers.is_empty() {
        // an image without layers: its root is an empty directory
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).with_context(|| format!("create `{}`", empty.display()))?;
        lowers.push(empty);
    }
    let mounted = rbox_storage::Rootfs::Overlay {
        lowers,
        upper,
        work,
        volatile: true,
    }
    .mount(t)
    .map_err(anyhow::Error::from)
    .and_then(|()| {
        use nix::mount::MsFlags;
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        nix::mount::mount(None::<&str>, t, None::<&str>, flags, None::<&str>)
            .map_err(|e| anyhow::anyhow!("make `{}` read-only: {e}", t.display()))
    });
    if mounted.is_err() {
        let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(dir);
    }
    mounted
}

/// `rbox image unmount`: prints each image's id, mounted or not, as Podman does. `--all` is
/// not refused outside `rbox unshare`: no image is mounted in the caller's own namespace, so
/// it unmounts nothing and succeeds, as Podman's does there.
pub fn image_unmount(g: &Context, a: ImageUnmountArgs) -> Result<ExitCode> {
    if !a.all {
        refuse_outside("rbox image unmount")?;
    }
    let store = runtime::open_store(g)?;
    let points = mount_points();
    let imgs = if a.all {
        store
            .images()?
            .into_iter()
            .filter(|i| image_target(g, i.id.hex()).is_ok_and(|t| points.contains(&t)))
            .collect::<Vec<_>>()
    } else {
        named_images(&store, &a.images)?
    };
    for img in imgs {
        let t = image_target(g, img.id.hex())?;
        if points.contains(&t) {
            let flags = if a.force {
                nix::mount::MntFlags::MNT_DETACH
            } else {
                nix::mount::MntFlags::empty()
            };
            nix::mount::umount2(&t, flags).with_context(|| format!("unmount `{}`", t.display()))?;
            if let Some(p) = t.parent() {
                let _ = std::fs::remove_dir_all(p);
            }
        }
        println!("{}", img.id.hex());
    }
    Ok(ExitCode::SUCCESS)
}

/// The images `names` name, in order; the first unknown one refused in Podman's words.
fn named_images(
    store: &rbox_storage::Store,
    names: &[String],
) -> Result<Vec<rbox_storage::ImageRecord>> {
    names
        .iter()
        .map(|i| {
            store
                .lookup_image(i)
                .map_err(|e| super::common::image_not_known_bare(e.into()))
        })
        .collect()
}
