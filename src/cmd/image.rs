//! `rbox image SUBCOMMAND`: the image commands grouped as Podman groups them (`image ls`,
//! `image rm`, `image inspect`, ...). Each verb is its top-level twin under the group's name
//! for it: the same arguments, the same handler (through `Command::from`), and the same help
//! text (copied from the twin by `cli::command`, see [`twin`]); only `inspect` has arguments
//! and help of its own, and `exists`, `prune`, `tree`, `untag`, `mount` and `unmount`, which Podman has only in the group, are
//! reached through [`Command::Grouped`].

use crate::cli::{complete, Command};
use crate::cmd;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    #[command(visible_alias = "list")]
    Ls(cmd::images::ImagesArgs),
    #[command(visible_alias = "remove")]
    Rm(cmd::rmi::RmiArgs),
    Tag(cmd::tag::TagArgs),
    /// Display the configuration of images
    Inspect(ImageInspectArgs),
    History(cmd::history::HistoryArgs),
    Load(cmd::load::LoadArgs),
    Save(cmd::save::SaveArgs),
    Import(cmd::import::ImportArgs),
    /// Build an image from a Containerfile
    Build(cmd::build::BuildArgs),
    Pull(cmd::pull::PullArgs),
    Push(cmd::push::PushArgs),
    /// Check whether an image exists: exit 0 if it does, 1 if not
    Exists(cmd::exists::ImageExistsArgs),
    /// Remove dangling images (with -a, every image no container uses)
    Prune(cmd::prune::ImagePruneArgs),
    /// Print an image's layers as a tree
    Tree(cmd::tree::TreeArgs),
    /// Remove names from an image (all of them when none is given)
    Untag(cmd::untag::UntagArgs),
    /// Mount images' root filesystems read-only and print where (rootless: inside `rbox
    /// unshare`); without images, list the mounted ones
    Mount(cmd::mount::ImageMountArgs),
    /// Unmount images mounted by `rbox image mount`
    #[command(visible_alias = "umount")]
    Unmount(cmd::mount::ImageUnmountArgs),
}

/// The top-level command whose help `rbox image VERB` shows: the one of the same name but for
/// `ls` (`images`) and `rm` (`rmi`); none for `inspect` and the verbs only the group has.
pub fn twin(verb: &str) -> Option<&str> {
    match verb {
        "ls" => Some("images"),
        "rm" => Some("rmi"),
        "inspect" | "exists" | "prune" | "tree" | "mount" | "unmount" => None,
        v => Some(v),
    }
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

impl From<ImageCommand> for Command {
    fn from(c: ImageCommand) -> Command {
        match c {
            ImageCommand::Ls(a) => Command::Images(a),
            ImageCommand::Rm(a) => Command::Rmi(a),
            ImageCommand::Tag(a) => Command::Tag(a),
            ImageCommand::Inspect(a) => Command::Inspect(cmd::inspect::InspectArgs {
                kind: "image".into(),
                format: a.format,
                size: false,
                names: a.images,
                latest: false,
            }),
            ImageCommand::History(a) => Command::History(a),
            ImageCommand::Load(a) => Command::Load(a),
            ImageCommand::Save(a) => Command::Save(a),
            ImageCommand::Import(a) => Command::Import(a),
            ImageCommand::Build(a) => Command::Build(a),
            ImageCommand::Pull(a) => Command::Pull(a),
            ImageCommand::Push(a) => Command::Push(a),
            ImageCommand::Exists(a) => Command::Grouped(cmd::Grouped::ImageExists(a)),
            ImageCommand::Prune(a) => Command::Grouped(cmd::Grouped::ImagePrune(a)),
            ImageCommand::Tree(a) => Command::Grouped(cmd::Grouped::ImageTree(a)),
            ImageCommand::Untag(a) => Command::Untag(a),
            ImageCommand::Mount(a) => Command::Grouped(cmd::Grouped::ImageMount(a)),
            ImageCommand::Unmount(a) => Command::Grouped(cmd::Grouped::ImageUnmount(a)),
        }
    }
}
