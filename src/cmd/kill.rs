//! `rbox kill`: send a signal (SIGKILL by default) to running containers, through the
//! runtime's `signal_container` (the rbox process attached to the container forwards it).

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};

use crate::cli::{complete, GlobalArgs};
use crate::runtime;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct KillArgs {
    /// Signal to send: a name (KILL, SIGTERM) or a number
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
    /// Containers to signal (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present = "all", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: KillArgs) -> Result<ExitCode> {
    let Some(sig) = runtime::parse_signal(&a.signal) else {
        bail!(
            "invalid signal `{}`: use a name such as TERM or KILL, or a number",
            a.signal
        );
    };
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    if a.all {
        for r in state::list(g)?.into_iter().filter(state::is_running) {
            targets.push((r.id.clone(), r));
        }
    }
    for name in &a.containers {
        match state::lookup(g, name) {
            Ok(r) => targets.push((name.clone(), r)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    for (shown, rec) in targets {
        match runtime::signal_container(g, &rec, sig) {
            Ok(()) => println!("{shown}"),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}
