//! `rbox push IMAGE [DESTINATION]`: upload a stored image to a registry, as
//! `podman push` does (DESTINATION is `docker://HOST/REPO[:TAG]` or `HOST/REPO[:TAG]`; without
//! it the image's own name says where). The work is `rbox_registry::push`; progress is drawn
//! by `pull`'s display. Runs inside rbox's user namespace, where the store's files are ours.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use rbox_registry::PushOptions;

use crate::cmd::pull::{Display, RegistryFlags};
use crate::context::Context;
use crate::runtime;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Print nothing but errors
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the pushed manifest's digest to FILE
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub digestfile: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Local image to push (name or id)
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Where to push it: [docker://]HOST[:PORT]/REPO[:TAG] [default: the image's name]
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<String>,
}

pub fn run(g: &Context, a: PushArgs) -> Result<ExitCode> {
    let opts = PushOptions {
        transport: a.registry.transport()?,
        ..Default::default()
    };
    let store = runtime::open_store(g)?;
    let display = Display::new(a.quiet);
    let res = rbox_registry::push(&store, &a.image, a.destination.as_deref(), &opts, &display);
    display.finish();
    let shown = a.destination.as_deref().unwrap_or(&a.image);
    let report = res
        .with_context(|| format!("push `{}` to `{shown}`", a.image))
        .map_err(super::common::image_not_known_bare)?;
    if let Some(f) = &a.digestfile {
        std::fs::write(f, report.digest.to_string())
            .with_context(|| format!("write `{}`", f.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
