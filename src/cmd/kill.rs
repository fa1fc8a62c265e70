//! `rbox kill`: send a signal (SIGKILL by default) to running containers, through the
//! runtime's `signal_container` (the rbox process attached to the container forwards it).

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::targets::{All, Targets};
use crate::cli::complete;
use crate::context::Context;
use crate::exit;
use crate::runtime;

#[derive(Debug, Clone, clap::Args)]
pub struct KillArgs {
    /// Signal to send: a name (KILL, SIGTERM, RTMIN+3) or a number
    #[arg(
        short = 's',
        long = "signal",
        value_name = "SIGNAL",
        default_value = "KILL"
    )]
    pub signal: String,
    /// Signal all running containers
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Signal the container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Read the id of a container to signal from FILE (as `run --cidfile` writes it)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Vec<std::path::PathBuf>,
    /// Containers to signal (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present_any = ["all", "cidfile", "latest"], add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: KillArgs) -> Result<ExitCode> {
    let Some(sig) = runtime::parse_signal(&a.signal) else {
        // Podman's words, which scripts match
        match a.signal.parse::<i64>() {
            Ok(n) if n > 64 => bail!("valid signals are 1 through 64"),
            _ => bail!("invalid signal: {}", a.signal),
        }
    };
    let all = if a.all { All::Running } else { All::No };
    let names = super::targets::with_latest(g, a.latest, &a.containers, "containers")?;
    let targets = Targets::gather(
        g,
        all,
        &super::targets::with_cidfiles(&names, &a.cidfile)?,
        false,
    )?
    .all_found(exit::FAILED)?;
    targets.finish(|rec| {
        runtime::signal_container(g, rec, sig)?;
        crate::events::container(g, rec, "kill");
        Ok(())
    })
}
