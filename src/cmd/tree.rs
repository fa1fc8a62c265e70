//! `rbox image tree IMAGE`: an image's layers, bottom-most first, as Podman 4.3 draws them:
//! the image's id, names and size, then one line per layer, the top one naming the images it
//! tops. rbox identifies a layer by its diff id (Podman by its storage layer id).

use std::process::ExitCode;

use anyhow::Result;

use super::common::{image_not_known_bare, read_store, short_id};
use super::system::df_size;
use crate::cli::complete;
use crate::context::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct TreeArgs {
    /// The image (name or id)
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub image: String,
}

pub fn run(g: &Context, a: TreeArgs) -> Result<ExitCode> {
    let store = read_store(g)?;
    let rec = store
        .lookup_image(&a.image)
        .map_err(|e| image_not_known_bare(e.into()))?;
    let names = format!("[{}]", rec.names.join(" "));
    let mut out = format!(
        "Image ID: {}\nTags:     {names}\nSize:     {}\nImage Layers\n",
        short_id(rec.id.hex()),
        df_size(rec.size)
    );
    let last = rec.layers.len().saturating_sub(1);
    for (i, l) in rec.layers.iter().enumerate() {
        let size = store.layer_size(&l.diff_id).unwrap_or(0);
        let (branch, top) = if i == last {
            ("└──", format!(" Top Layer of: {names}"))
        } else {
            ("├──", String::new())
        };
        out.push_str(&format!(
            "{branch} ID: {} Size: {}{top}\n",
            short_id(l.diff_id.hex()),
            df_size(size)
        ));
    }
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
