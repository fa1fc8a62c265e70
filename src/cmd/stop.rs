//! `rbox stop`: stop running containers with their stop signal (SIGTERM unless the image or
//! `run` set another), then SIGKILL after `--time` seconds, through the runtime's
//! `stop_container` (which signals the rbox process attached to the container and waits on a
//! pidfd, never by sleeping).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::targets::{All, Selection, Targets};
use crate::cli::complete;
use crate::context::Context;
use crate::exit;
use crate::runtime;

#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait for the stop signal to work before sending SIGKILL (the container's
    /// --stop-timeout, else 10)
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Stop all running containers
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub select: Selection,
    /// Ignore containers that do not exist
    #[arg(short = 'i', long)]
    pub ignore: bool,
    /// Containers to stop (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: StopArgs) -> Result<ExitCode> {
    let names = a.select.names(g, &a.containers, a.all)?;
    let all = if a.all { All::Running } else { All::No };
    let targets = Targets::gather(g, all, &names, a.ignore)?.all_found(exit::FAILED)?;
    // Stopping a stopped container is not an error, as in podman.
    targets.finish(|rec| {
        runtime::stop_container(
            g,
            rec,
            a.time
                .map(Duration::from_secs)
                .unwrap_or_else(|| rec.spec.opts.stop_timeout()),
        )
        .with_context(|| format!("stop container {}", rec.name))?;
        crate::events::container(g, rec, "stop");
        Ok(())
    })
}
