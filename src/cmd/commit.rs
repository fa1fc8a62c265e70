//! `rbox commit` (and `container commit`): a new image from a container, the container's image
//! plus one layer of what the container changed (its overlay upper; a copy-driver root is
//! compared with the image's layers), with the container's own settings in the config as
//! Podman carries them (Env, Cmd, Entrypoint, WorkingDir, User, Labels), `--change`
//! instructions on top, and the history entry Podman writes. `--squash` stores the whole root
//! as the only layer. Progress lines as Podman prints them go to stderr, the new id to stdout.
//!
//! The layer writer itself is the store's (`rbox_storage::changes`); this file decides which
//! directories make the layer and what the config says.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use rbox_storage::layer::Compression;
use rbox_storage::{Driver, ImageRecord, ManifestFormat};
use serde_json::{json, Map, Value};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime;
use crate::state::{self, ContainerRecord, MountKind};

#[derive(Debug, Clone, clap::Args)]
pub struct CommitArgs {
    /// Set the author of the image
    #[arg(short = 'a', long, value_name = "AUTHOR")]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the image config (e.g. 'CMD ["/bin/sh"]')
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Format of the image manifest and metadata
    #[arg(short = 'f', long, value_name = "FORMAT", default_value = "oci")]
    pub format: String,
    /// Include container volumes as image volumes
    #[arg(long)]
    pub include_volumes: bool,
    /// Set a commit message (docker format only)
    #[arg(short = 'm', long, value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Pause the container during the commit
    #[arg(short = 'p', long)]
    pub pause: bool,
    /// Print nothing but the image id
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Squash the image and its new layer into one layer
    #[arg(long)]
    pub squash: bool,
    /// The container (name or id)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: String,
    /// Name for the image (NAME[:TAG]; without a registry it goes under localhost/)
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
}

pub fn run(g: &Context, a: CommitArgs) -> Result<ExitCode> {
    crate::exit::stop_on_signals()?;
    let format = match a.format.as_str() {
        "oci" => ManifestFormat::Oci,
        "docker" => ManifestFormat::Docker,
        // Podman's words
        f => bail!("unrecognized image format {f:?}"),
    };
    if a.message.is_some() && format != ManifestFormat::Docker {
        // Podman's words
        bail!("messages are only compatible with the docker image format (-f docker)");
    }
    let rec = state::lookup(g, &a.container)?;
    if rec.rootfs.is_some() {
        bail!(
            "commit container {}: its root is a host directory (--rootfs), not an image",
            rec.name
        );
    }
    if let Some(f) = &rec.image_file {
        bail!(
            "commit container {}: its root is the image file `{}` (--image-file), not an image of the store",
            rec.name,
            f.display()
        );
    }
    if let Some(name) = &a.image {
        rbox_storage::images::normalize_name(name)
            .map_err(|_| anyhow!("invalid reference format"))?;
    }
    let paused = a.pause && state::is_running(&rec) && !state::is_paused(g, &rec) && {
        runtime::control::pause_container(g, &rec)
            .with_context(|| format!("pause container {}", rec.name))?;
        true
    };
    let made = commit(g, &rec, &a, format);
    if paused {
        runtime::control::unpause_container(g, &rec)
            .with_context(|| format!("unpause container {}", rec.name))?;
    }
    let img = made.with_context(|| format!("commit container {}", rec.name))?;
    println!("{}", img.id.hex());
    crate::events::container(g, &rec, "commit");
    Ok(ExitCode::SUCCESS)
}

fn commit(
    g: &Context,
    rec: &ContainerRecord,
    a: &CommitArgs,
    format: ManifestFormat,
) -> Result<ImageRecord> {
    let store = runtime::open_store(g)?;
    let base = store
        .lookup_image(&rec.image_id)
        .with_context(|| format!("image {} of the container", rec.image_name))?;
    let dir = store.container_dir(&rec.id)?;
    let skip = mount_points(&dir.lower_dirs, rec);
    let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
    let layer = match (rec.driver, a.squash) {
        (Driver::Copy, true) => {
            store.layer_from_union(&[dir.rootfs.as_path()], Compression::Gzip, &skip)?
        }
        (Driver::Copy, false) => {
            store.layer_from_copy(&dir.rootfs, &dir.lower_dirs, Compression::Gzip, &skip)?
        }
        (_, true) => {
            let mut dirs = vec![dir.upper.as_path()];
            dirs.extend(dir.lower_dirs.iter().map(PathBuf::as_path));
            store.layer_from_union(&dirs, Compression::Gzip, &skip)?
        }
        (_, false) => store.layer_from_upper_skipping(&dir.upper, Compression::Gzip, &skip)?,
    };
    let base_cfg: Value =
        serde_json::from_slice(&store.read_blob(&base.id)?).context("read the image config")?;
    let cfg = config(base_cfg, rec, a, format)?;
    if !a.quiet {
        eprintln!("Getting image source signatures");
        let layers = if a.squash { &[][..] } else { &base.layers[..] };
        for l in layers {
            eprintln!("Copying blob {}", l.diff_id);
        }
        eprintln!("Copying blob {}", layer.diff_id);
    }
    let names: Vec<String> = a.image.iter().cloned().collect();
    let img = store.commit_derived(
        (!a.squash).then_some(&base),
        Some(&layer),
        cfg,
        format,
        &names,
    )?;
    if !a.quiet {
        eprintln!("Copying config {}", img.id);
        eprintln!("Writing manifest to image destination");
        eprintln!("Storing signatures");
    }
    Ok(img)
}

/// The empty files rbox leaves in an upper for its own bind mounts (`/etc/hosts`, ...,
/// and the container's `--secret` files), where the image has no such file: not the
/// container's changes, so not in the layer (Podman's commit has no secret file either).
fn mount_points(lowers: &[PathBuf], rec: &ContainerRecord) -> Vec<String> {
    let secrets = rec.spec.secrets.iter().filter(|s| !s.env);
    super::diff::MOUNT_POINTS
        .iter()
        .copied()
        .chain(secrets.map(|s| s.target.as_str()))
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !super::diff::lower_exists(lowers, Path::new(p)))
        .map(String::from)
        .collect()
}

/// The new image's config: the image's, with the container's settings as Podman carries
/// them, `--change` on top, and one more history entry.
fn config(
    mut cfg: Value,
    rec: &ContainerRecord,
    a: &CommitArgs,
    format: ManifestFormat,
) -> Result<Value> {
    let obj = cfg
        .as_object_mut()
        .ok_or_else(|| anyhow!("the image config is not a JSON object"))?;
    let c = obj.entry("config").or_insert_with(|| json!({}));
    if !c.is_object() {
        *c = json!({});
    }
    let c = c.as_object_mut().expect("an object");
    let s = &rec.spec;
    let set = |c: &mut Map<String, Value>, k: &str, v: Value, empty: bool| {
        if empty {
            c.remove(k);
        } else {
            c.insert(k.into(), v);
        }
    };
    set(c, "Env", json!(s.env), s.env.is_empty());
    set(
        c,
        "Entrypoint",
        json!(s.entrypoint),
        s.entrypoint.is_empty(),
    );
    set(c, "Cmd", json!(s.cmd), s.cmd.is_empty());
    set(c, "WorkingDir", json!(s.workdir), s.workdir.is_empty());
    if !s.user.is_empty() {
        c.insert("User".into(), json!(s.user));
    }
    if !s.labels.is_empty() {
        c.insert("Labels".into(), json!(s.labels));
    }
    if a.include_volumes {
        // the container's bind mounts become the image's volumes, as Podman's do
        let vols = c.entry("Volumes").or_insert_with(|| json!({}));
        if let Some(vols) = vols.as_object_mut() {
            for m in s.mounts.iter().filter(|m| m.kind == MountKind::Bind) {
                vols.insert(m.destination.clone(), json!({}));
            }
        }
    }
    for ch in &a.change {
        rbox_storage::apply_change(c, ch)?;
    }
    let now = rbox_storage::rfc3339_now();
    obj.insert("created".into(), json!(now));
    match &a.author {
        Some(au) => obj.insert("author".into(), json!(au)),
        None => obj.remove("author"),
    };
    if format == ManifestFormat::Docker {
        match &a.message {
            Some(m) => obj.insert("comment".into(), json!(m)),
            None => obj.remove("comment"),
        };
    }
    // Podman's entry for a commit: created_by is the shell, comment names the image.
    let mut h = json!({
        "created": now,
        "created_by": "/bin/sh",
    });
    if let Some(au) = &a.author {
        h["author"] = json!(au);
    }
    h["comment"] = json!(format!("FROM {}", rec.image_name));
    let hist = obj.entry("history").or_insert_with(|| json!([]));
    if a.squash || !hist.is_array() {
        *hist = json!([]);
    }
    hist.as_array_mut().expect("an array").push(h);
    Ok(cfg)
}
