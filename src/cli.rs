//! The clap definition of the whole command line: global options and the list of
//! subcommands. Each subcommand's `Args` struct lives next to its handler in `cmd/<verb>.rs`.
//! Flags are spelled as Podman spells them, so `alias docker=rbox` keeps working hands working.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "rbox",
    version,
    about = "Rootless, daemonless containers",
    long_about = "rbox runs OCI containers as an ordinary user: no root, no daemon, no setuid helper \
                  of its own. Images live in a content-addressed store under $XDG_DATA_HOME/rbox.",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Storage root (images, layers, container records) [default: $XDG_DATA_HOME/rbox]
    #[arg(long, global = true, env = "RBOX_ROOT", value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// Directory for volatile state [default: $XDG_RUNTIME_DIR/rbox, else /tmp/rbox-$UID]
    #[arg(long, global = true, env = "RBOX_RUNROOT", value_name = "PATH")]
    pub runroot: Option<PathBuf>,
    /// Storage driver for container root filesystems: overlay (kernel overlayfs, falling back
    /// to copy when it cannot be mounted) or vfs (always copy)
    #[arg(long, global = true, env = "RBOX_STORAGE_DRIVER", value_name = "DRIVER")]
    pub storage_driver: Option<String>,
    /// Log messages at or above this level: error, warn, info, debug
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container
    Run(cmd::run::RunArgs),
    /// Create a container without starting it
    Create(cmd::run::RunArgs),
    /// Start one or more created containers
    Start(cmd::start::StartArgs),
    /// List containers
    #[command(visible_alias = "list", visible_alias = "ls")]
    Ps(cmd::ps::PsArgs),
    /// Remove one or more containers
    Rm(cmd::rm::RmArgs),
    /// Display the configuration of containers or images
    Inspect(cmd::inspect::InspectArgs),
    /// List images in local storage
    Images(cmd::images::ImagesArgs),
    /// Remove one or more images from local storage
    Rmi(cmd::rmi::RmiArgs),
    /// Add an additional name to a local image
    Tag(cmd::tag::TagArgs),
    /// Show the history of an image
    History(cmd::history::HistoryArgs),
    /// Manage images
    Image(cmd::image::ImageArgs),
    /// Load images from a docker-archive or oci-archive
    Load(cmd::load::LoadArgs),
    /// Save images to a docker-archive or oci-archive
    Save(cmd::save::SaveArgs),
    /// Import a tarball as a root filesystem image
    Import(cmd::import::ImportArgs),
    /// Pull an image from a registry
    Pull(cmd::pull::PullArgs),
    /// Push an image to a registry
    Push(cmd::push::PushArgs),
    /// Log in to a container registry
    Login(cmd::login::LoginArgs),
    /// Log out of a container registry
    Logout(cmd::login::LogoutArgs),
    /// Inspect manifests and manifest lists
    Manifest(cmd::manifest::ManifestArgs),
    /// Display host, namespace and storage information
    Info(cmd::info::InfoArgs),
    /// Run a command inside rbox's user namespace (e.g. to remove files owned by mapped ids)
    Unshare(cmd::unshare::UnshareArgs),
    /// Print a shell completion script
    Completion(cmd::completion::CompletionArgs),
    /// Print version information
    Version,
}

pub fn command() -> clap::Command {
    Cli::command()
}

pub fn parse() -> Cli {
    Cli::parse()
}

/// Answer a dynamic completion request when the shell asks for one, and exit.
pub fn complete_env() {
    clap_complete::CompleteEnv::with_factory(command).complete();
}
