//! `rbox restart`: stop running containers (as `rbox stop` does) and start them again
//! detached; created and exited containers are just started. Prints each container as the user
//! named it, as Podman does.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::targets::{All, Selection, Targets};
use crate::cli::complete;
use crate::context::Context;
use crate::exit;
use crate::runtime;

#[derive(Debug, Clone, clap::Args)]
pub struct RestartArgs {
    /// Seconds to wait for the stop signal to work before sending SIGKILL (the container's
    /// --stop-timeout, else 10)
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Restart all containers
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub select: Selection,
    /// With --all, only the running containers
    #[arg(long, requires = "all")]
    pub running: bool,
    /// Containers to restart (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: RestartArgs) -> Result<ExitCode> {
    let all = match (a.all, a.running) {
        (false, _) => All::No,
        (true, true) => All::Running,
        (true, false) => All::Every,
    };
    let names = a.select.names(g, &a.containers, a.all)?;
    let targets = Targets::gather(g, all, &names, false)?.all_found(exit::FAILED)?;
    targets.finish(|rec| {
        runtime::restart(
            g,
            rec,
            a.time
                .map(Duration::from_secs)
                .unwrap_or_else(|| rec.spec.opts.stop_timeout()),
        )
        .with_context(|| format!("restart container {}", rec.name))?;
        crate::events::container(g, rec, "restart");
        Ok(())
    })
}
