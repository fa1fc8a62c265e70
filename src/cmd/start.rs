//! `rbox start`: start created (or exited) containers, through the runtime's
//! `runtime::start`. With `-a` the caller stays attached and gets the container's exit code.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::complete;
use crate::context::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Attach to the container's output and exit with its status
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach the container's stdin (implies --attach)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Containers to start (names or ids)
    #[arg(value_name = "CONTAINER", required = true, add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: StartArgs) -> Result<ExitCode> {
    let attach = a.attach || a.interactive;
    if attach && a.containers.len() > 1 {
        bail!("you cannot attach to more than one container: start them one at a time with -a");
    }
    let mut last = ExitCode::SUCCESS;
    for c in &a.containers {
        last = crate::runtime::start(g, c, attach)?;
    }
    Ok(last)
}
