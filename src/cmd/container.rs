//! `rbox container SUBCOMMAND`: the container commands grouped as Podman and Docker group them
//! (`container ls`, `container rm`, `container inspect`, ...). Each verb is its top-level twin
//! under the group's name for it: the same arguments, the same handler (through
//! `Command::from`), and the same help text (copied from the twin by `cli::command`, see
//! [`twin`]); only `inspect` has arguments and help of its own, and `exists`, `prune` and
//! `cleanup`, which Podman has only in the group, are reached through [`Command::Grouped`].

use crate::cli::{complete, Command};
use crate::cmd;

#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ContainerCommand {
    #[command(visible_alias = "list", visible_alias = "ps")]
    Ls(cmd::ps::PsArgs),
    Run(cmd::run::RunArgs),
    Create(cmd::run::RunArgs),
    Start(cmd::start::StartArgs),
    Stop(cmd::stop::StopArgs),
    Restart(cmd::restart::RestartArgs),
    Attach(cmd::attach::AttachArgs),
    Exec(cmd::exec::ExecArgs),
    Top(cmd::top::TopArgs),
    Pause(cmd::pause::PauseArgs),
    Unpause(cmd::pause::UnpauseArgs),
    Stats(cmd::stats::StatsArgs),
    Logs(cmd::logs::LogsArgs),
    Port(cmd::port::PortArgs),
    Cp(cmd::cp::CpArgs),
    Diff(cmd::diff::DiffArgs),
    Commit(cmd::commit::CommitArgs),
    Export(cmd::export::ExportArgs),
    Mount(cmd::mount::MountArgs),
    #[command(visible_alias = "umount")]
    Unmount(cmd::mount::UnmountArgs),
    Kill(cmd::kill::KillArgs),
    #[command(visible_alias = "remove")]
    Rm(cmd::rm::RmArgs),
    Wait(cmd::wait::WaitArgs),
    Rename(cmd::rename::RenameArgs),
    Update(cmd::update::UpdateArgs),
    /// Display the configuration of containers
    Inspect(ContainerInspectArgs),
    /// Check whether a container exists: exit 0 if it does, 1 if not
    Exists(cmd::exists::ContainerExistsArgs),
    /// Remove all containers that are not running
    Prune(cmd::prune::ContainerPruneArgs),
    Init(cmd::init::InitArgs),
    /// Remove what an exited container left behind (with --rm, the container)
    Cleanup(cmd::cleanup::CleanupArgs),
}

/// The top-level command whose help `rbox container VERB` shows: the one of the same name but
/// for `ls` (`ps`); none for `inspect` and the verbs only the group has.
pub fn twin(verb: &str) -> Option<&str> {
    match verb {
        "ls" => Some("ps"),
        "inspect" | "exists" | "prune" | "cleanup" => None,
        v => Some(v),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ContainerInspectArgs {
    /// Output format: json, or a Go template such as '{{.State.Running}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Add each container's sizes: SizeRw (its writable layer) and SizeRootFs (that and its
    /// image's layers), in bytes
    #[arg(short = 's', long)]
    pub size: bool,
    /// Containers to inspect (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present = "latest", add = complete::container_candidates())]
    pub containers: Vec<String>,
    /// The container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
}

impl From<ContainerCommand> for Command {
    fn from(c: ContainerCommand) -> Command {
        match c {
            ContainerCommand::Ls(a) => Command::Ps(a),
            ContainerCommand::Run(a) => Command::Run(a),
            ContainerCommand::Create(a) => Command::Create(a),
            ContainerCommand::Start(a) => Command::Start(a),
            ContainerCommand::Stop(a) => Command::Stop(a),
            ContainerCommand::Restart(a) => Command::Restart(a),
            ContainerCommand::Attach(a) => Command::Attach(a),
            ContainerCommand::Exec(a) => Command::Exec(a),
            ContainerCommand::Top(a) => Command::Top(a),
            ContainerCommand::Pause(a) => Command::Pause(a),
            ContainerCommand::Unpause(a) => Command::Unpause(a),
            ContainerCommand::Stats(a) => Command::Stats(a),
            ContainerCommand::Logs(a) => Command::Logs(a),
            ContainerCommand::Port(a) => Command::Port(a),
            ContainerCommand::Cp(a) => Command::Cp(a),
            ContainerCommand::Diff(a) => Command::Diff(a),
            ContainerCommand::Commit(a) => Command::Commit(a),
            ContainerCommand::Export(a) => Command::Export(a),
            ContainerCommand::Mount(a) => Command::Mount(a),
            ContainerCommand::Unmount(a) => Command::Unmount(a),
            ContainerCommand::Kill(a) => Command::Kill(a),
            ContainerCommand::Rm(a) => Command::Rm(a),
            ContainerCommand::Wait(a) => Command::Wait(a),
            ContainerCommand::Rename(a) => Command::Rename(a),
            ContainerCommand::Update(a) => Command::Update(a),
            ContainerCommand::Inspect(a) => Command::Inspect(cmd::inspect::InspectArgs {
                kind: "container".into(),
                format: a.format,
                size: a.size,
                names: a.containers,
                latest: a.latest,
            }),
            ContainerCommand::Exists(a) => Command::Grouped(cmd::Grouped::ContainerExists(a)),
            ContainerCommand::Prune(a) => Command::Grouped(cmd::Grouped::ContainerPrune(a)),
            ContainerCommand::Init(a) => Command::Init(a),
            ContainerCommand::Cleanup(a) => Command::Grouped(cmd::Grouped::ContainerCleanup(a)),
        }
    }
}
