//! `rbox rmi` (and `rbox image rm`): remove images. A name of an image with other names only
//! loses that name (as in Podman); otherwise the image goes, with every layer and blob no
//! other image uses. An image a container uses is refused unless `-f`, which removes those
//! containers too. Runs inside rbox's user namespace (layer files belong to mapped ids).

use std::process::ExitCode;

use anyhow::{bail, Result};
use rbox_storage::{Digest, ImageRecord, Store};

use crate::cli::complete;
use crate::context::Context;
use crate::exit::{self, CodedError};
use crate::runtime;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct RmiArgs {
    /// Remove the image even if containers use it (those containers are removed too); ignore
    /// images that do not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove all images
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Ignore images that do not exist
    #[arg(short = 'i', long)]
    pub ignore: bool,
    /// Keep the untagged build steps the image was made from (by default those nothing
    /// else uses go with it)
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    /// Images to remove (names or ids)
    #[arg(value_name = "IMAGE", required_unless_present = "all", add = complete::image_candidates())]
    pub images: Vec<String>,
}

pub fn run(g: &Context, a: RmiArgs) -> Result<ExitCode> {
    if a.all && !a.images.is_empty() {
        // Podman's words
        bail!("when using the --all switch, you may not pass any images names or IDs");
    }
    let store = runtime::open_store(g)?;
    // Podman's exit codes (podman-rmi(1)): 1 when the only failures were unknown images,
    // 2 when an image is in use, else 125.
    let mut errors = Vec::new();
    // Podman looks every name up before removing: its lookups' errors come first
    let mut unknown = Vec::new();
    let mut code = exit::NOT_KNOWN;
    if a.all {
        // the additional stores' images are read-only: --all means the user's own
        for rec in store
            .images()?
            .into_iter()
            .filter(|r| r.read_only_store.is_none())
        {
            if store.lookup_image(&rec.id.to_string()).is_err() {
                continue; // went with an image built on it
            }
            if let Err(e) = remove(g, &store, &rec, a.force, !a.no_prune) {
                code = code.max(in_use_or_failed(&e));
                errors.push(format!("{e:#}"));
            }
        }
    }
    for name in &a.images {
        let rec = match store.lookup_image(name) {
            Ok(r) => r,
            // as Podman's: --force also ignores unknown images
            Err(rbox_storage::Error::ImageNotFound(_)) if a.ignore || a.force => continue,
            Err(e) => {
                if !matches!(e, rbox_storage::Error::ImageNotFound(_)) {
                    code = exit::FAILED;
                }
                unknown.push(e.to_string());
                continue;
            }
        };
        // A name (not an id) of an image with several names: untag only.
        let by_id = is_id_of(name, &rec.id);
        if !by_id && rec.names.len() > 1 {
            match store.untag_image(name) {
                Ok(after) => {
                    for n in rec.names.iter().filter(|n| !after.names.contains(n)) {
                        println!("Untagged: {n}");
                        crate::events::image(g, "untag", rec.id.hex(), n);
                    }
                }
                Err(e) => {
                    code = exit::FAILED;
                    errors.push(e.to_string());
                }
            }
            continue;
        }
        if by_id && rec.names.len() > 1 && !a.force {
            // Podman's text, for scripts that match it.
            code = exit::FAILED;
            errors.push(format!(
                "unable to delete image \"{}\" by ID with more than one tag ([{}]): please force removal",
                rec.id.hex(),
                rec.names.join(" ")
            ));
            continue;
        }
        if let Err(e) = remove(g, &store, &rec, a.force, !a.no_prune) {
            code = code.max(in_use_or_failed(&e));
            errors.push(format!("{e:#}"));
        }
    }
    unknown.append(&mut errors);
    match unknown.len() {
        0 => Ok(ExitCode::SUCCESS),
        _ => Err(CodedError::list(code, &unknown).into()),
    }
}

/// The exit code for a failed removal: 2 when containers use the image, else 125.
fn in_use_or_failed(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<CodedError>() {
        Some(c) if c.code == exit::IN_USE => exit::IN_USE,
        _ => exit::FAILED,
    }
}

fn is_id_of(arg: &str, id: &Digest) -> bool {
    let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
    hex.len() >= 3 && id.hex().starts_with(hex)
}

/// Remove one image (and, when forced, the containers using it), saying what went; then, as
/// Podman does unless `prune` is off (`--no-prune`), the untagged build steps it was made
/// from that nothing else uses.
fn remove(g: &Context, store: &Store, rec: &ImageRecord, force: bool, prune: bool) -> Result<()> {
    let all = store.images().unwrap_or_default();
    // each image's build-step parent, read once and before the removal takes configs with it
    let parent_of: Vec<(&ImageRecord, &ImageRecord)> = all
        .iter()
        .filter_map(|r| super::images::built_on(store, r, &all).map(|p| (r, p)))
        .collect();
    let parent = |id: &Digest| parent_of.iter().find(|(c, _)| c.id == *id).map(|(_, p)| *p);
    remove_quietly(g, store, rec, force)?;
    for n in &rec.names {
        println!("Untagged: {n}");
        crate::events::image(g, "untag", rec.id.hex(), n);
    }
    println!("Deleted: {}", rec.id.hex());
    crate::events::image(
        g,
        "remove",
        rec.id.hex(),
        rec.names.first().map_or("", String::as_str),
    );
    let mut gone = vec![rec.id.clone()];
    let mut next = parent(&rec.id).filter(|_| prune);
    while let Some(p) = next {
        let other_child = parent_of
            .iter()
            .any(|(c, cp)| cp.id == p.id && !gone.contains(&c.id));
        if other_child
            || p.read_only_store.is_some()
            || !store.containers_using(&p.id).is_empty()
            || store.remove_image(&p.id, false).is_err()
        {
            break;
        }
        println!("Deleted: {}", p.id.hex());
        gone.push(p.id.clone());
        next = parent(&p.id);
    }
    Ok(())
}

/// Remove one image (and, when forced, the containers using it); refused, unless forced, for
/// one a container uses. `image prune` removes through here too.
pub fn remove_quietly(g: &Context, store: &Store, rec: &ImageRecord, force: bool) -> Result<()> {
    let users = store.containers_using(&rec.id);
    if !users.is_empty() {
        if !force {
            let names: Vec<String> = users
                .iter()
                .map(|id| {
                    state::lookup(g, id)
                        .map(|r| r.name)
                        .unwrap_or_else(|_| id[..12.min(id.len())].to_string())
                })
                .collect();
            return Err(CodedError::new(
                exit::IN_USE,
                format!(
                    "image {} is in use by container(s) {}: remove them first (rbox rm) or use rmi -f",
                    rec.names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| rec.id.hex()[..12].to_string()),
                    names.join(", ")
                ),
            )
            .into());
        }
        for id in &users {
            if let Ok(c) = state::lookup(g, id) {
                super::rm::prepare(g, &c, true, 0)?;
            }
            store.remove_container_dir(id)?;
        }
    }
    store.remove_image(&rec.id, force)?;
    Ok(())
}
