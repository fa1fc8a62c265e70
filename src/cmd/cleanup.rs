//! `rbox container cleanup CONTAINER...`: what is left of a container that exited (its live
//! state: the init and monitor pids, the attach socket) is removed, as the monitor removes it
//! when it records the exit; `--rm` removes the container (through `rm`). Each container is
//! printed as given, as Podman prints them. Running containers are refused.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::targets::Latest;
use crate::cli::complete;
use crate::context::Context;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct CleanupArgs {
    /// Clean up every container that is not running
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub latest: Latest,
    /// Remove the containers after cleaning them up
    #[arg(long)]
    pub rm: bool,
    /// Containers to clean up (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: CleanupArgs) -> Result<ExitCode> {
    let names = a.latest.names(g, &a.containers, a.all, false)?;
    let targets: Vec<(String, state::ContainerRecord)> = if a.all {
        let mut all = state::list(g)?;
        all.reverse();
        all.into_iter()
            .filter(|r| !state::is_running(r) && state::restarting_monitor(g, r).is_none())
            .map(|r| (r.id.clone(), r))
            .collect()
    } else {
        names
            .iter()
            .map(|c| Ok((c.clone(), state::lookup(g, c)?)))
            .collect::<Result<_>>()?
    };
    for (_, rec) in &targets {
        if state::is_running(rec) {
            bail!(
                "container {} is running: stop it before cleaning it up",
                rec.name
            );
        }
    }
    if a.rm {
        return super::rm::run(
            g,
            super::rm::RmArgs {
                force: false,
                all: false,
                latest: Default::default(),
                volumes: false,
                time: 0,
                ignore: false,
                depend: false,
                filter: Vec::new(),
                cidfile: Vec::new(),
                containers: targets.into_iter().map(|(given, _)| given).collect(),
            },
        );
    }
    for (given, rec) in &targets {
        state::remove_live(g, rec);
        println!("{given}");
    }
    Ok(ExitCode::SUCCESS)
}
