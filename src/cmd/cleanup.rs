//! `rbox container cleanup CONTAINER...`: what is left of a container that exited (its live
//! state: the init and monitor pids, the attach socket) is removed, as the monitor removes it
//! when it records the exit; `--rm` removes the container (as `rm` does), `--rmi` then the
//! image it was created from (as `run --rmi`). Each container is printed as given once all
//! that went well, as Podman prints them. Running containers are refused. `--exec` names an
//! exec session to clean up instead: rbox records none (an `rbox exec` is a process of the
//! container, nothing is left of it once it ends), so every id is unknown, in Podman's words.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::targets::{All, Latest, Targets};
use crate::cli::complete;
use crate::context::Context;
use crate::runtime;
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
    /// Remove the image each container was created from after cleaning it up (only its name
    /// when the image has others; refused while a container uses it)
    #[arg(long)]
    pub rmi: bool,
    /// Clean up the exec session ID of the container instead (rbox keeps no exec sessions:
    /// an exec is a process of the container, nothing is left once it ends)
    #[arg(long, value_name = "ID")]
    pub exec: Option<String>,
    /// Containers to clean up (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: CleanupArgs) -> Result<ExitCode> {
    // rbox returns once the containers are renamed away
    crate::runtime::monitor::exit_follows_removal();
    // (Podman takes an empty --exec as none)
    let exec = a.exec.as_deref().filter(|e| !e.is_empty());
    if exec.is_some() {
        // Podman's words
        if a.all {
            bail!("exec and all options conflict");
        }
        if a.containers.len() > 1 {
            bail!("cannot use exec option when more than one container is given");
        }
    }
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
    if let (Some(id), Some((_, rec))) = (exec, targets.first()) {
        // (one container, checked above)
        bail!(
            "container {} has no exec session with ID {id}: no such exec session",
            rec.id
        );
    }
    for (_, rec) in &targets {
        if state::is_running(rec) {
            bail!(
                "container {} is running: stop it before cleaning it up",
                rec.name
            );
        }
    }
    let shown: Vec<String> = targets.into_iter().map(|(given, _)| given).collect();
    let mut targets = Targets::gather(g, All::No, &shown, false)?;
    // the records and the live state belong to the user: before the user namespace
    if a.rm {
        targets.keep(|rec| super::rm::prepare(g, rec, false, 0));
    } else {
        targets.keep(|rec| {
            state::remove_live(g, rec);
            Ok(())
        });
    }
    if !(a.rm || a.rmi) || targets.is_empty() {
        return targets.finish(|_| Ok(()));
    }
    let store = runtime::open_store(g)?;
    let mut detached = Vec::new();
    let code = targets.finish(|rec| {
        if a.rm {
            super::rm::remove_storage(g, &store, rec, false, &mut detached)?;
        }
        if a.rmi {
            runtime::create::remove_image_of(&store, rec)?;
        }
        Ok(())
    });
    runtime::monitor::delete_later(&store, detached, None);
    code
}
