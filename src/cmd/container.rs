//! `rbox container SUBCOMMAND`: the container commands grouped as Podman and Docker group them
//! (`container ls`, `container rm`, `container inspect`, ...), each mapped to the same handler
//! as its top-level twin.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{complete, GlobalArgs, EXIT_CODES};
use crate::cmd;

#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(visible_alias = "list", visible_alias = "ps")]
    Ls(cmd::ps::PsArgs),
    /// Run a command in a new container
    #[command(after_long_help = EXIT_CODES)]
    Run(cmd::run::RunArgs),
    /// Create a container without starting it
    #[command(after_long_help = EXIT_CODES)]
    Create(cmd::run::RunArgs),
    /// Start one or more created containers
    Start(cmd::start::StartArgs),
    /// Stop one or more running containers
    Stop(cmd::stop::StopArgs),
    /// Run a command in a running container
    Exec(cmd::exec::ExecArgs),
    /// Print the output of a detached container
    Logs(cmd::logs::LogsArgs),
    /// Send a signal to one or more running containers
    Kill(cmd::kill::KillArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(cmd::rm::RmArgs),
    /// Display the configuration of containers
    Inspect(ContainerInspectArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ContainerInspectArgs {
    /// Output format: json, or a Go template such as '{{.State.Running}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Containers to inspect (names or ids)
    #[arg(value_name = "CONTAINER", required = true, add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: ContainerArgs) -> Result<ExitCode> {
    match a.command {
        ContainerCommand::Ls(a) => cmd::ps::run(g, a),
        ContainerCommand::Run(a) => cmd::run::run(g, a),
        ContainerCommand::Create(a) => cmd::run::create(g, a),
        ContainerCommand::Start(a) => cmd::start::run(g, a),
        ContainerCommand::Stop(a) => cmd::stop::run(g, a),
        ContainerCommand::Exec(a) => cmd::exec::run(g, a),
        ContainerCommand::Logs(a) => cmd::logs::run(g, a),
        ContainerCommand::Kill(a) => cmd::kill::run(g, a),
        ContainerCommand::Rm(a) => cmd::rm::run(g, a),
        ContainerCommand::Inspect(a) => {
            cmd::inspect::inspect(g, "container", a.format.as_deref(), &a.containers)
        }
    }
}
