//! `rbox image SUBCOMMAND`: the image commands grouped as Podman groups them (`image ls`,
//! `image rm`, `image inspect`, ...), each mapped to the same handler as its top-level twin.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{complete, GlobalArgs};
use crate::cmd;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// List images in local storage
    #[command(visible_alias = "list")]
    Ls(cmd::images::ImagesArgs),
    /// Remove one or more images from local storage
    #[command(visible_alias = "remove")]
    Rm(cmd::rmi::RmiArgs),
    /// Add an additional name to a local image
    Tag(cmd::tag::TagArgs),
    /// Display the configuration of images
    Inspect(ImageInspectArgs),
    /// Show the history of an image
    History(cmd::history::HistoryArgs),
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
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImageInspectArgs {
    /// Output format: json, or a Go template such as '{{.Architecture}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Images to inspect (names or ids)
    #[arg(value_name = "IMAGE", required = true, add = complete::image_candidates())]
    pub images: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: ImageArgs) -> Result<ExitCode> {
    match a.command {
        ImageCommand::Ls(a) => cmd::images::run(g, a),
        ImageCommand::Rm(a) => cmd::rmi::run(g, a),
        ImageCommand::Tag(a) => cmd::tag::run(g, a),
        ImageCommand::Inspect(a) => {
            cmd::inspect::inspect(g, "image", a.format.as_deref(), &a.images)
        }
        ImageCommand::History(a) => cmd::history::run(g, a),
        ImageCommand::Load(a) => cmd::load::run(g, a),
        ImageCommand::Save(a) => cmd::save::run(g, a),
        ImageCommand::Import(a) => cmd::import::run(g, a),
        ImageCommand::Pull(a) => cmd::pull::run(g, a),
        ImageCommand::Push(a) => cmd::push::run(g, a),
    }
}
