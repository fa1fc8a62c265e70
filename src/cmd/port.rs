//! `rbox port`: the ports a running container publishes, as `podman port` prints them
//! (`80/tcp -> 0.0.0.0:8080`; with a port, only its host address; `--all` for every running
//! container, each line after its short id).

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::targets::Latest;
use crate::cli::complete;
use crate::context::Context;
use crate::state::{self, ContainerRecord, PortSpec};

#[derive(Debug, Clone, clap::Args)]
pub struct PortArgs {
    /// Every running container's ports
    #[arg(short = 'a', long, conflicts_with = "container")]
    pub all: bool,
    #[command(flatten)]
    pub latest: Latest,
    /// Container (name or id); with `--latest`, the PORT
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: Option<String>,
    /// Only this container port (PORT or PORT/PROTO)
    #[arg(value_name = "PORT", requires = "container")]
    pub port: Option<String>,
}

fn line(p: &PortSpec) -> String {
    format!("{}/{} -> {}", p.container_port, p.protocol, p.host_addr())
}

/// Only a running container publishes anything (as in Podman).
fn published(r: &ContainerRecord) -> &[PortSpec] {
    if state::is_running(r) {
        &r.spec.ports
    } else {
        &[]
    }
}

pub fn run(g: &Context, a: PortArgs) -> Result<ExitCode> {
    if a.all && a.latest.latest {
        bail!("--all and --latest cannot be used together");
    }
    if a.all {
        for r in state::list(g)? {
            for p in published(&r) {
                println!("{}\t{}", &r.id[..12], line(p));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // as Podman: with --latest, the one argument is the port
    let (rec, port) = match (a.latest.latest, a.container) {
        (true, port) if a.port.is_none() => (state::latest(g)?, port),
        (true, _) => bail!("--latest and containers cannot be used together"),
        (false, Some(name)) => (state::lookup(g, &name)?, a.port),
        (false, None) => bail!("you must supply a running container name or id"),
    };
    let ports = published(&rec);
    let Some(want) = port else {
        for p in ports {
            println!("{}", line(p));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let (num, proto) = want.split_once('/').unwrap_or((&want, "tcp"));
    let Ok(num) = num.parse::<u16>() else {
        bail!("invalid port `{want}`: expected PORT or PORT/PROTO");
    };
    let found: Vec<&PortSpec> = ports
        .iter()
        .filter(|p| p.container_port == num && p.protocol == proto)
        .collect();
    if found.is_empty() {
        bail!("failed to find published port \"{want}\"");
    }
    for p in found {
        println!("{}", p.host_addr());
    }
    Ok(ExitCode::SUCCESS)
}
