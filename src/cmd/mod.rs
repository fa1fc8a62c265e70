//! One module per subcommand: its clap `Args` next to its handler; `common` and `targets` hold
//! what several of them share.

pub mod attach;
pub mod build;
pub mod cleanup;
pub mod commit;
pub mod common;
pub mod completion;
pub mod container;
pub mod cp;
pub mod diff;
pub mod docs;
pub mod events;
pub mod exec;
pub mod exists;
pub mod export;
pub mod generate;
pub mod global;
pub mod healthcheck;
pub mod history;
pub mod image;
pub mod images;
pub mod import;
pub mod info;
pub mod init;
pub mod inspect;
pub mod join;
pub mod kill;
pub mod load;
pub mod login;
pub mod logs;
pub mod manifest;
pub mod mount;
pub mod oci;
pub mod pause;
pub mod port;
pub mod prune;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rename;
pub mod restart;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod search;
pub mod secret;
pub mod start;
pub mod stats;
pub mod stop;
pub mod system;
pub mod tag;
pub mod targets;
pub mod top;
pub mod tree;
pub mod unshare;
pub mod untag;
pub mod update;
pub mod volume;
pub mod wait;

use std::process::ExitCode;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::context::Context;

/// The verbs Podman has only inside a group (`container exists`, `image prune`): no
/// top-level twin, so the group hands them over as themselves.
#[derive(Debug)]
pub enum Grouped {
    ContainerExists(exists::ContainerExistsArgs),
    ImageExists(exists::ImageExistsArgs),
    ContainerPrune(prune::ContainerPruneArgs),
    ImagePrune(prune::ImagePruneArgs),
    ImageTree(tree::TreeArgs),
    ContainerCleanup(cleanup::CleanupArgs),
    ImageMount(mount::ImageMountArgs),
    ImageUnmount(mount::ImageUnmountArgs),
}

/// Run the parsed command line; the `ExitCode` is the container's for `run`, else 0.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // the OCI runtime keeps its own state: no store, no storage.conf, no user namespace
    if let Command::Oci(a) = cli.command {
        return oci::run(cli.global.root, a);
    }
    global::check(&cli.global)?;
    if cli.global.noout && !global::attaches_stdout(&cli.command) {
        global::silence_stdout()?;
    }
    run_command(&context(&cli.global)?, cli.command)
}

/// The one place the global options become the [`Context`] everything below this layer takes:
/// the flags, else storage.conf (see [`crate::config`]), else rbox's defaults.
fn context(g: &GlobalArgs) -> anyhow::Result<Context> {
    let conf = crate::config::storage()?;
    let driver = conf
        .driver
        .filter(|d| match d.parse::<rbox_storage::Driver>() {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("storage.conf: {e}; using rbox's default");
                false
            }
        });
    let additional = if g.additional_image_store.is_empty() {
        conf.additional_image_stores
    } else {
        g.additional_image_store.clone()
    };
    Ok(Context::new(
        g.root.clone().or(conf.graphroot),
        g.runroot.clone().or(conf.runroot),
        g.storage_driver.clone().or(driver),
    )
    .with_additional_image_stores(additional)
    .with_hooks_dirs(g.hooks_dir.clone()))
}

fn run_command(g: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(a) => run::run(g, a),
        Command::Create(a) => run::create(g, a),
        Command::Start(a) => start::run(g, a),
        Command::Stop(a) => stop::run(g, a),
        Command::Restart(a) => restart::run(g, a),
        Command::Kill(a) => kill::run(g, a),
        Command::Init(a) => init::run(g, a),
        Command::Exec(a) => exec::run(g, a),
        Command::Top(a) => top::run(g, a),
        Command::Pause(a) => pause::pause(g, a),
        Command::Unpause(a) => pause::unpause(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Logs(a) => logs::run(g, a),
        Command::Port(a) => port::run(g, a),
        Command::Cp(a) => cp::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Commit(a) => commit::run(g, a),
        Command::Export(a) => export::run(g, a),
        Command::Mount(a) => mount::mount(g, a),
        Command::Unmount(a) => mount::unmount(g, a),
        Command::Attach(a) => attach::run(g, a),
        Command::Ps(a) => ps::run(g, a),
        Command::Rm(a) => rm::run(g, a),
        Command::Wait(a) => wait::run(g, a),
        Command::Rename(a) => rename::run(g, a),
        Command::Search(a) => search::run(g, a),
        Command::Events(a) => events::run(g, a),
        Command::Update(a) => update::run(g, a),
        Command::Inspect(a) => inspect::run(g, a),
        Command::Images(a) => images::run(g, a),
        Command::Rmi(a) => rmi::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::Untag(a) => untag::run(g, a),
        Command::History(a) => history::run(g, a),
        // a group's verb is its top-level twin
        Command::Image(a) => run_command(g, a.command.into()),
        Command::Container(a) => run_command(g, a.command.into()),
        Command::Grouped(v) => match v {
            Grouped::ContainerExists(a) => exists::container(g, a),
            Grouped::ImageExists(a) => exists::image(g, a),
            Grouped::ContainerPrune(a) => prune::containers(g, a),
            Grouped::ImagePrune(a) => prune::images(g, a),
            Grouped::ImageTree(a) => tree::run(g, a),
            Grouped::ContainerCleanup(a) => cleanup::run(g, a),
            Grouped::ImageMount(a) => mount::image_mount(g, a),
            Grouped::ImageUnmount(a) => mount::image_unmount(g, a),
        },
        Command::Load(a) => load::run(g, a),
        Command::Save(a) => save::run(g, a),
        Command::Import(a) => import::run(g, a),
        Command::Build(a) => build::run(g, a),
        Command::Buildx(a) => match a.command {
            build::BuildxCommand::Build(a) => build::run(g, a),
        },
        Command::Pull(a) => pull::run(g, a),
        Command::Push(a) => push::run(g, a),
        Command::Login(a) => login::login(g, a),
        Command::Logout(a) => login::logout(g, a),
        Command::Manifest(a) => manifest::run(g, a),
        Command::Volume(a) => volume::run(g, a),
        Command::Secret(a) => secret::run(g, a),
        Command::Generate(a) => generate::run(g, a),
        Command::Healthcheck(a) => healthcheck::run(g, a),
        Command::Info(a) => info::run(g, a),
        Command::Unshare(a) => unshare::run(g, a),
        Command::Oci(_) => {
            anyhow::bail!("rbox oci runs before the context is made (a bug in rbox)")
        }
        Command::Completion(a) => completion::run(g, a),
        Command::JoinWatch { key, id } => join::watch(g, &key, &id),
        Command::GenerateDocs { dir } => {
            docs::write_to(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version(a) => system::version(a),
        Command::System(a) => system::run(g, a),
    }
}
