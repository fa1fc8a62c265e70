//! `rbox container init CONTAINER...`: Podman prepares a created container so that `start` is
//! quick. rbox prepares nothing ahead of `start`, so init checks what start will need (the
//! record and the container's storage) and prints each container as given, as Podman prints
//! them; the container stays created. A running container is refused with Podman's words.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Initialize every created container
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Initialize the container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Containers to initialize (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present_any = ["all", "latest"], add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: InitArgs) -> Result<ExitCode> {
    let store = super::common::read_store(g)?;
    let targets: Vec<(String, state::ContainerRecord)> = if a.all {
        let mut all = state::list(g)?;
        all.reverse();
        all.into_iter()
            .filter(|r| r.state.status == state::Status::Created)
            .map(|r| (r.id.clone(), r))
            .collect()
    } else {
        super::targets::with_latest(g, a.latest, &a.containers, "containers")?
            .iter()
            .map(|c| Ok((c.clone(), state::lookup(g, c)?)))
            .collect::<Result<_>>()?
    };
    for (given, rec) in targets {
        if state::is_running(&rec) {
            bail!(
                "container {} has already been created in runtime: container state improper",
                rec.id
            );
        }
        if let Err(e) = store.container_dir(&rec.id) {
            bail!("check storage of container {}: {e}", rec.name);
        }
        println!("{given}");
    }
    Ok(ExitCode::SUCCESS)
}
