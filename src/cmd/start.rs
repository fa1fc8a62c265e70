//! `rbox start`: start created (or exited) containers, through the runtime's
//! `runtime::start`. With `-a` the caller stays attached and gets the container's exit code.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::targets::Latest;
use crate::cli::complete;
use crate::context::Context;
use crate::runtime::front;

#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Attach to the container's output and exit with its status
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach the container's stdin (implies --attach)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Keys that detach from the container and leave it running (with --attach, for a
    /// container created with -i): single characters and ctrl-<value> (a-z, @, [, \, ], ^,
    /// _), comma-separated (default ctrl-p,ctrl-q; empty: none)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Pass the signals rbox receives on to the container (true when attached); false: they
    /// end rbox and the container goes on
    #[arg(long = "sig-proxy", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: Option<bool>,
    /// Start every container that is not running (after a reboot:
    /// `rbox start --all --filter restart-policy=always`)
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub latest: Latest,
    /// With --all, only the containers that pass this filter (KEY=VALUE, as `rbox ps`
    /// takes them)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE", add = complete::ps_filter_candidates())]
    pub filter: Vec<String>,
    /// Containers to start (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: StartArgs) -> Result<ExitCode> {
    let attach = a.attach || a.interactive;
    // --filter alone selects among all containers, as Podman's does
    let all = a.all || !a.filter.is_empty();
    // Podman's words
    if all && !a.containers.is_empty() {
        bail!("either start all containers or the container(s) provided in the arguments");
    }
    if !all && !a.latest.latest && a.containers.is_empty() {
        bail!("start requires at least one argument");
    }
    let names = a.latest.names(g, &a.containers, all, false)?;
    if attach && names.len() > 1 {
        bail!("you cannot attach to more than one container: start them one at a time with -a");
    }
    if all {
        if attach {
            bail!("you cannot start and attach all containers at once");
        }
        return start_all(g, &a.filter);
    }
    // containers.conf is read only when it can matter
    let conf = match (&a.detach_keys, attach) {
        (None, true) => crate::config::containers()?.detach_keys,
        _ => None,
    };
    let keys = front::keys_or_conf(a.detach_keys.as_deref(), conf.as_deref())?;
    let o = front::Options {
        keys,
        sig_proxy: a.sig_proxy.unwrap_or(true),
        hidden: [false; 2],
    };
    // every name looked up first, as Podman does: an unknown one fails before any start
    for c in &names {
        crate::state::lookup(g, c)?;
    }
    let mut last = ExitCode::SUCCESS;
    for c in &names {
        last = crate::runtime::create::start_with(g, c, attach.then_some(&o))?;
    }
    Ok(last)
}

/// `start --all`: every container not running that passes `filters`, printed by full id once
/// started (as Podman prints them); the failures are reported together at the end.
fn start_all(g: &Context, filters: &[String]) -> Result<ExitCode> {
    let filters = super::ps::Filters::parse(g, filters)?;
    let mut errors = Vec::new();
    let mut all = crate::state::list(g)?;
    all.reverse(); // oldest first: a container joined by others starts before them
    for r in all {
        if crate::state::is_running(&r) || !filters.matches(g, &r) {
            continue;
        }
        if let Err(e) = crate::runtime::start(g, &r.id, false) {
            errors.push(format!("{e:#}"));
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{}", errors.join("; "))
    }
}
