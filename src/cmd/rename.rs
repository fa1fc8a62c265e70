//! `rbox rename` (and `container rename`): give a container another name, running or not.
//! Prints nothing, as Podman. The name index and the record are changed in `state::rename`.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct RenameArgs {
    /// The container (name or id)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: String,
    /// Its new name
    #[arg(value_name = "NAME")]
    pub name: String,
}

pub fn run(g: &Context, a: RenameArgs) -> Result<ExitCode> {
    let rec = state::lookup(g, &a.container)?;
    state::rename(g, &rec, &a.name).with_context(|| format!("rename container {}", rec.name))?;
    Ok(ExitCode::SUCCESS)
}
