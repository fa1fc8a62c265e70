//! A container's volumes, at create and at removal: `--volumes-from` resolved against the
//! other container's record, anonymous volumes named, missing named volumes created (on
//! first use, as Podman does), new ones filled from the image's content at their path, `:U`
//! applied, and each volume's mount pointed at its `_data`; later, the anonymous volumes
//! removed with the container (`rm -v`, `run --rm`). Runs in the invocation, inside rbox's
//! user namespace (after [`super::open_store`]), so copied files keep the image's owners.
//!
//! Parsing `-v`/`--mount` is `spec`'s; the volumes themselves (records, copy-up, removal) are
//! rbox-storage's (`storage/src/volume.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use rbox_storage::{Store, VolumeRecord};

use crate::context::Context;
use crate::state::{self, ContainerRecord, MountKind, Spec, VolumeUse};

/// Makes `spec`'s volumes real before the container is created: `volumes_from` (as given)
/// adds the other containers' volumes and bind mounts; each volume exists afterwards, was
/// filled from `lowers` (the root's layer directories, bottom first) when new, and its mount
/// has its `_data` as source. Returns the volumes created here, for the caller to remove if
/// the create fails later.
pub fn prepare(
    g: &Context,
    store: &Store,
    spec: &mut Spec,
    volumes_from: &[String],
    lowers: &[PathBuf],
) -> Result<Vec<String>> {
    add_volumes_from(g, spec, volumes_from)?;
    let mut created = Vec::new();
    let res = make_volumes(store, spec, lowers, &mut created);
    if res.is_err() {
        remove_created(store, &created);
    }
    res.map(|()| created)
}

/// Removes the volumes [`prepare`] created, after a failed create.
pub fn remove_created(store: &Store, names: &[String]) {
    for n in names {
        let _ = store.remove_volume(n);
    }
}

fn make_volumes(
    store: &Store,
    spec: &mut Spec,
    lowers: &[PathBuf],
    created: &mut Vec<String>,
) -> Result<()> {
    let user = spec.user.clone();
    for v in spec.volumes.iter_mut() {
        if v.name.is_empty() {
            v.name = state::new_id()?;
        }
        match store.volume(&v.name) {
            Ok(_) => {}
            Err(rbox_storage::Error::VolumeNotFound(_)) => {
                let mut rec = VolumeRecord::new(&v.name);
                rec.anonymous = v.anonymous;
                match store.create_volume(&rec) {
                    Ok(()) => created.push(v.name.clone()),
                    // made meanwhile by a concurrent create: use it (and never remove it)
                    Err(rbox_storage::Error::VolumeExists(_)) => {}
                    Err(e) => return Err(e).context(format!("create volume {}", v.name)),
                }
            }
            Err(e) => return Err(e.into()),
        }
        store
            .populate_volume(&v.name, lowers, &v.destination, !v.nocopy)
            .with_context(|| {
                format!(
                    "copy the image's `{}` into volume {}",
                    v.destination, v.name
                )
            })?;
        if v.chown {
            let (passwd, group) = (
                read_merged(lowers, "etc/passwd"),
                read_merged(lowers, "etc/group"),
            );
            let id = super::process::resolve_user(&user, &passwd, &group)
                .map_err(|e| anyhow::anyhow!("chown volume {} (U): {e}", v.name))?;
            store
                .chown_volume(&v.name, id.uid, id.gid)
                .with_context(|| format!("chown volume {} (U)", v.name))?;
        }
        let data = store.volume_data(&v.name).to_string_lossy().into_owned();
        for m in spec.mounts.iter_mut() {
            if m.destination == v.destination && m.source.is_empty() {
                m.source = data.clone();
            }
        }
    }
    Ok(())
}

/// The text of file `rel` in the merged layers (the topmost layer that has it), or "".
fn read_merged(lowers: &[PathBuf], rel: &str) -> String {
    for l in lowers.iter().rev() {
        let p = l.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => return std::fs::read_to_string(&p).unwrap_or_default(),
            Ok(_) => return String::new(),
            Err(_) => {}
        }
    }
    String::new()
}

/// `--volumes-from CONTAINER[:ro|rw]`: the volumes and bind mounts of CONTAINER, on the same
/// destinations, unless the new container mounts something there itself (Podman's rule).
fn add_volumes_from(g: &Context, spec: &mut Spec, volumes_from: &[String]) -> Result<()> {
    for item in volumes_from {
        let (name, mode) = match item.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw" | "z" | "Z"))) => (n, Some(m)),
            Some(_) => bail!("invalid --volumes-from `{item}`: expected CONTAINER[:ro|rw]"),
            None => (item.as_str(), None),
        };
        let other = state::lookup(g, name)?;
        let clean = |d: &str| Path::new(d).components().collect::<PathBuf>();
        for m in &other.spec.mounts {
            if m.kind != MountKind::Bind || m.source.is_empty() {
                continue;
            }
            if spec
                .mounts
                .iter()
                .any(|x| clean(&x.destination) == clean(&m.destination))
            {
                continue;
            }
            let mut m = m.clone();
            match mode {
                Some("ro") if !m.options.iter().any(|o| o == "ro") => m.options.push("ro".into()),
                Some("rw") => m.options.retain(|o| o != "ro"),
                _ => {}
            }
            if let Some(v) = other
                .spec
                .volumes
                .iter()
                .find(|v| v.destination == m.destination)
            {
                spec.volumes.push(VolumeUse {
                    name: v.name.clone(),
                    destination: v.destination.clone(),
                    // the other container's: its `rm -v` removes it, not ours
                    anonymous: false,
                    nocopy: true,
                    chown: false,
                });
                // filled with the volume's `_data` by `make_volumes`, as any volume
                m.source.clear();
            }
            spec.mounts.push(m);
        }
    }
    Ok(())
}

/// The containers whose records name volume `name`.
pub fn users(g: &Context, name: &str) -> Result<Vec<ContainerRecord>> {
    Ok(state::list(g)?
        .into_iter()
        .filter(|c| c.spec.volumes.iter().any(|v| v.name == name))
        .collect())
}

/// After container `rec` was removed: its anonymous volumes go too, but for those another
/// container still uses (`--volumes-from`). Failures are warnings: the container is gone.
pub fn remove_anonymous(g: &Context, store: &Store, rec: &ContainerRecord) {
    for v in rec.spec.volumes.iter().filter(|v| v.anonymous) {
        match users(g, &v.name) {
            Ok(u) if u.iter().any(|c| c.id != rec.id) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("remove volume {}: {e:#}", v.name);
                continue;
            }
        }
        match store.remove_volume(&v.name) {
            Ok(()) | Err(rbox_storage::Error::VolumeNotFound(_)) => {}
            Err(e) => tracing::warn!("remove volume {}: {e}", v.name),
        }
    }
}
