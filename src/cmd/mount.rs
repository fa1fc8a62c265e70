//! `rbox mount` / `rbox unmount` (and `container mount/unmount`): a container's root
//! filesystem mounted at `<runtime dir>/mounts/<id>/merged` for the host to read and write,
//! as `podman mount` does. Rootless, a mount needs a mount namespace owned by rbox's user
//! namespace: the one `rbox unshare` gives its command (Podman refuses outside `podman
//! unshare` in the same words). The list of mounted containers is read from this process's
//! own mount table, so it is what the caller's namespace really has.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::{self, userns};
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// Do not truncate the ids in the list of mounted containers
    #[arg(long)]
    pub notruncate: bool,
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
    /// Containers to unmount (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present = "all",
          add = complete::container_candidates())]
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
    Ok(g.runtime_dir()?.join("mounts").join(id).join("merged"))
}

/// The mount points in this process's mount namespace (field 5 of mountinfo, unescaped).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ").replace("\\011", "\t")))
        .collect()
}

pub fn mount(g: &Context, a: MountArgs) -> Result<ExitCode> {
    refuse_outside("rbox mount")?;
    if a.containers.is_empty() {
        let points = mount_points();
        for rec in state::list(g)? {
            let t = target(g, &rec.id)?;
            if points.contains(&t) {
                let id = if a.notruncate {
                    &rec.id[..]
                } else {
                    &rec.id[..12]
                };
                println!("{id}  {}", t.display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let recs = a
        .containers
        .iter()
        .map(|c| state::lookup(g, c))
        .collect::<Result<Vec<_>>>()?;
    let store = runtime::open_store(g)?;
    let points = mount_points();
    for rec in recs {
        let t = target(g, &rec.id)?;
        if !points.contains(&t) {
            if rec.driver == rbox_storage::Driver::FuseOverlay {
                anyhow::bail!(
                    "mount container {}: its root is a FUSE overlay, served only while the \
                     container runs; use `rbox cp`, or the overlay or vfs driver",
                    rec.name
                );
            }
            if rec.image_file.is_some() {
                anyhow::bail!(
                    "mount container {}: its root is an image file (--image-file), served only \
                     while the container runs; use `rbox cp`",
                    rec.name
                );
            }
            std::fs::create_dir_all(&t).with_context(|| format!("create `{}`", t.display()))?;
            let dir = store.container_dir(&rec.id)?;
            store
                .rootfs(rec.driver, &dir, false)?
                .mount(&t)
                .with_context(|| format!("mount container {}", rec.name))?;
        }
        println!("{}", t.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unmount(g: &Context, a: UnmountArgs) -> Result<ExitCode> {
    let points = mount_points();
    let recs = if a.all {
        state::list(g)?
            .into_iter()
            .filter(|r| target(g, &r.id).is_ok_and(|t| points.contains(&t)))
            .map(|r| (r.id.clone(), r))
            .collect::<Vec<_>>()
    } else {
        a.containers
            .iter()
            .map(|c| state::lookup(g, c).map(|r| (c.clone(), r)))
            .collect::<Result<Vec<_>>>()?
    };
    for (shown, rec) in recs {
        let t = target(g, &rec.id)?;
        if points.contains(&t) {
            let flags = if a.force {
                nix::mount::MntFlags::MNT_DETACH
            } else {
                nix::mount::MntFlags::empty()
            };
            nix::mount::umount2(&t, flags).with_context(|| format!("unmount `{}`", t.display()))?;
            let _ = std::fs::remove_dir(&t);
            if let Some(p) = t.parent() {
                let _ = std::fs::remove_dir(p);
            }
        }
        println!("{shown}");
    }
    Ok(ExitCode::SUCCESS)
}
