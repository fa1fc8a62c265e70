//! A container's secrets (`run`/`create --secret`): at create each secret is found and its
//! data copied into the container's directory (`containers/<id>/secrets/<n>`, mode and owner
//! as asked, in ids of rbox's user namespace), so that removing the secret later changes
//! nothing for the container (Podman 4.3 starts such a container too); at each start those
//! copies become read-only bind mounts, or variables of the process that `inspect` does not
//! show. Parsing `--secret` is `spec`'s; the secrets themselves are rbox-storage's
//! (`storage/src/secret.rs`).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use rbox_storage::Store;

use super::launch::KeepId;
use super::userns;
use crate::layout;
use crate::state::Spec;

/// Finds each secret `spec` names (Podman's error for one that is not there) and records
/// its id: before anything of the container is created.
pub fn resolve(store: &Store, spec: &mut Spec) -> Result<()> {
    for s in &mut spec.secrets {
        s.id = store.secret(&s.name)?.id;
    }
    Ok(())
}

/// The id of rbox's user namespace that container id `id` is, through the container's own
/// map (`uid_map` text, None: the container runs in rbox's namespace); refused when rbox's
/// namespace does not have it.
fn outer_id(what: &str, name: &str, id: u32, map: Option<&str>, count: u32) -> Result<u32> {
    let outer = match map {
        Some(m) => rbox_storage::mount::fuse::shift::IdMap::parse(m).and_then(|m| m.outside(id)),
        None => Some(id),
    };
    match outer {
        Some(o) if o < count => Ok(o),
        _ => bail!(
            "secret {name}: {what} {id} is not mapped in the container's user namespace (rbox's has ids below {count}: add a range for your user to /etc/subuid and /etc/subgid for more)"
        ),
    }
}

/// Copies the data of `spec`'s secrets into `container_dir` (see the module doc). Runs in
/// rbox's user namespace, after [`resolve`].
pub fn copy_in(store: &Store, container_dir: &Path, spec: &Spec) -> Result<()> {
    if spec.secrets.is_empty() {
        return Ok(());
    }
    let d = layout::container_secrets(container_dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&d)
        .with_context(|| format!("create `{}`", d.display()))?;
    let mode = userns::current_mode();
    let ids = mode.idmap();
    // the container's ids in rbox's namespace: its own maps, or keep-id's
    let maps = match super::launch::keep_id(&mode, spec) {
        Some(k) => Some((
            KeepId::map(k.uid, k.uid_count),
            KeepId::map(k.gid, k.gid_count),
        )),
        None => super::launch::own_maps(&mode, spec)?,
    };
    for (n, s) in spec.secrets.iter().enumerate() {
        let data = store
            .secret_data(&s.id)
            .with_context(|| format!("read secret {}", s.name))?;
        // made 0600 and only then given its owner and mode: never readable by more than asked
        // (the container's directory is new, and removed whole if the create fails)
        let p = layout::container_secret(container_dir, n);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .with_context(|| format!("create `{}`", p.display()))?;
        std::io::Write::write_all(&mut f, &data)
            .with_context(|| format!("write `{}`", p.display()))?;
        drop(f);
        if !s.env {
            let uid = outer_id(
                "uid",
                &s.name,
                s.uid,
                maps.as_ref().map(|m| m.0.as_str()),
                ids.uid_count,
            )?;
            let gid = outer_id(
                "gid",
                &s.name,
                s.gid,
                maps.as_ref().map(|m| m.1.as_str()),
                ids.gid_count,
            )?;
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .with_context(|| format!("chown `{}`", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(s.mode))
                .with_context(|| format!("chmod `{}`", p.display()))?;
        }
    }
    Ok(())
}

/// The read-only bind mounts of `spec`'s file secrets, for the OCI spec.
pub fn mounts(container_dir: &Path, spec: &Spec) -> Vec<oci_spec::runtime::Mount> {
    spec.secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.env)
        .map(|(n, s)| {
            super::oci::mount(
                &s.target,
                "bind",
                layout::container_secret(container_dir, n),
                &["bind", "ro", "nosuid", "nodev", "noexec"],
            )
        })
        .collect()
}

/// The `NAME=DATA` variables of `spec`'s env secrets, read from their copies.
pub fn env(container_dir: &Path, spec: &Spec) -> Result<Vec<String>> {
    spec.secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.env)
        .map(|(n, s)| {
            let p = layout::container_secret(container_dir, n);
            let data = fs::read(&p)
                .with_context(|| format!("read secret {} from `{}`", s.name, p.display()))?;
            Ok(format!("{}={}", s.target, String::from_utf8_lossy(&data)))
        })
        .collect()
}
