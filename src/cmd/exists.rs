//! `rbox container exists` and `rbox image exists`: answer with the exit status alone, for
//! scripts (`rbox container exists web || rbox run --name web ...`): 0 when the container or
//! image is there, 1 when it is not, 125 when rbox cannot tell (an unreadable store, an
//! ambiguous id prefix). Nothing is printed but such an error. Neither needs the user namespace.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::complete;
use crate::context::Context;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct ContainerExistsArgs {
    /// Check external containers as well (rbox has none of other tools': accepted for
    /// compatibility)
    #[arg(long)]
    pub external: bool,
    /// The container (name or id)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImageExistsArgs {
    /// The image (name or id)
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub image: String,
}

/// The exit status of a check that found nothing.
const ABSENT: u8 = 1;

pub fn container(g: &Context, a: ContainerExistsArgs) -> Result<ExitCode> {
    let lookup = state::lookup(g, &a.container);
    if lookup.is_ok() {
        return Ok(ExitCode::SUCCESS);
    }
    // Not found, or something worse: reading the list again tells an unreadable store
    // (its error, 125) and an ambiguous prefix (the lookup's error) from a plain absence.
    let prefix = |id: &str| {
        a.container.chars().all(|c| c.is_ascii_hexdigit()) && id.starts_with(&a.container)
    };
    let hits = state::list(g)?.iter().filter(|r| prefix(&r.id)).count();
    match hits {
        0 => Ok(ExitCode::from(ABSENT)),
        _ => lookup.map(|_| ExitCode::SUCCESS),
    }
}

pub fn image(g: &Context, a: ImageExistsArgs) -> Result<ExitCode> {
    let store = super::common::read_store(g)?;
    match store.lookup_image(&a.image) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(rbox_storage::Error::ImageNotFound(_)) => Ok(ExitCode::from(ABSENT)),
        Err(e) => Err(e.into()),
    }
}
