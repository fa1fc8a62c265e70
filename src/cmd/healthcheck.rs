//! `rbox healthcheck run CONTAINER`: run a container's healthcheck once (as its monitor does at
//! the interval), record the result and act on it; prints `unhealthy` and exits 1 when the
//! check fails, as Podman does.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::health::{self, Outcome};
use crate::state;

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    #[command(subcommand)]
    pub command: HealthcheckCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HealthcheckCommand {
    /// Run a container's healthcheck once
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Container (name or id)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: String,
}

pub fn run(g: &Context, a: HealthcheckArgs) -> Result<ExitCode> {
    match a.command {
        HealthcheckCommand::Run(r) => {
            let rec = state::lookup(g, &r.container).map_err(|e| {
                anyhow::anyhow!(
                    "unable to look up {} to perform a health check: {e:#}",
                    r.container
                )
            })?;
            match health::run_once(g, &rec)? {
                Outcome::Healthy => Ok(ExitCode::SUCCESS),
                Outcome::Unhealthy => {
                    println!("unhealthy");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
