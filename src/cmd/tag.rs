//! `rbox tag` (and `rbox image tag`): add names to a local image. Names are written as small
//! files in the store (one rename each); no namespace is needed.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::common::read_store;
use crate::cli::complete;
use crate::context::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct TagArgs {
    /// The image to name (name or id)
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub image: String,
    /// New names (NAME[:TAG]; a name without a registry goes under localhost/)
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
}

pub fn run(g: &Context, a: TagArgs) -> Result<ExitCode> {
    let store = read_store(g)?;
    for t in &a.targets {
        let rec = store
            .tag_image(&a.image, t)
            .with_context(|| format!("tag `{}` as `{t}`", a.image))
            .map_err(super::common::image_not_known_bare)?;
        crate::events::image(g, "tag", rec.id.hex(), t);
    }
    Ok(ExitCode::SUCCESS)
}
