//! `rbox pause` and `rbox unpause`: freeze the processes of running containers and let them
//! go on, through the runtime's `pause_container` and `unpause_container` (SIGSTOP and
//! SIGCONT to every process of the container; the paused flag lives with the running state).

use std::process::ExitCode;

use anyhow::Result;

use super::targets::{All, Selection, Targets};
use crate::cli::complete;
use crate::context::Context;
use crate::exit;
use crate::runtime;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct PauseArgs {
    /// Pause all running containers
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub select: Selection,
    /// Containers to pause (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UnpauseArgs {
    /// Unpause all paused containers
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub select: Selection,
    /// Containers to unpause (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn pause(g: &Context, a: PauseArgs) -> Result<ExitCode> {
    let mut names = a.select.names(g, &a.containers, a.all)?;
    // --all: the running containers that are not paused yet
    if a.all {
        let running = state::list(g)?.into_iter().filter(state::is_running);
        names.splice(
            0..0,
            running.filter(|r| !state::is_paused(g, r)).map(|r| r.id),
        );
    }
    let targets = Targets::gather(g, All::No, &names, false)?.all_found(exit::FAILED)?;
    targets.finish(|rec| runtime::control::pause_container(g, rec))
}

pub fn unpause(g: &Context, a: UnpauseArgs) -> Result<ExitCode> {
    let mut names = a.select.names(g, &a.containers, a.all)?;
    if a.all {
        let paused = state::list(g)?
            .into_iter()
            .filter(|r| state::is_paused(g, r));
        names.splice(0..0, paused.map(|r| r.id));
    }
    let targets = Targets::gather(g, All::No, &names, false)?.all_found(exit::FAILED)?;
    targets.finish(|rec| runtime::control::unpause_container(g, rec))
}
