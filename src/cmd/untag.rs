//! `rbox image untag IMAGE [NAME...]`: remove names from a local image, all of them when none
//! is given, keeping the image (a nameless image is dangling). As Podman: silent on success; a
//! name the image does not have is "NAME: tag not known".

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_storage::images::normalize_name;

use super::common::{image_not_known_bare, read_store};
use crate::cli::complete;
use crate::context::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct UntagArgs {
    /// The image (name or id)
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub image: String,
    /// Names to remove (default: all of the image's names)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

pub fn run(g: &Context, a: UntagArgs) -> Result<ExitCode> {
    let store = read_store(g)?;
    let rec = store
        .lookup_image(&a.image)
        .map_err(|e| image_not_known_bare(e.into()))?;
    let names = if a.names.is_empty() {
        rec.names.clone()
    } else {
        let mut out = Vec::new();
        for n in &a.names {
            let full = normalize_name(n).unwrap_or_else(|_| n.clone());
            if !rec.names.contains(&full) {
                bail!("{full}: tag not known");
            }
            out.push(full);
        }
        out
    };
    for n in &names {
        store
            .untag_image(n)
            .with_context(|| format!("untag `{n}`"))?;
    }
    Ok(ExitCode::SUCCESS)
}
