//! One module per subcommand: its clap `Args` next to its handler; `common` and `targets` hold
//! what several of them share.

pub mod common;
pub mod completion;
pub mod container;
pub mod docs;
pub mod exec;
pub mod history;
pub mod image;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod kill;
pub mod load;
pub mod login;
pub mod logs;
pub mod manifest;
pub mod pause;
pub mod port;
pub mod ps;
pub mod pull;
pub mod push;
pub mod restart;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod start;
pub mod stats;
pub mod stop;
pub mod tag;
pub mod targets;
pub mod top;
pub mod unshare;

use std::process::ExitCode;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::context::Context;

/// Run the parsed command line; the `ExitCode` is the container's for `run`, else 0.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    run_command(&context(&cli.global), cli.command)
}

/// The one place the global options become the [`Context`] everything below this layer takes.
fn context(g: &GlobalArgs) -> Context {
    Context::new(g.root.clone(), g.runroot.clone(), g.storage_driver.clone())
}

fn run_command(g: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(a) => run::run(g, a),
        Command::Create(a) => run::create(g, a),
        Command::Start(a) => start::run(g, a),
        Command::Stop(a) => stop::run(g, a),
        Command::Restart(a) => restart::run(g, a),
        Command::Kill(a) => kill::run(g, a),
        Command::Exec(a) => exec::run(g, a),
        Command::Top(a) => top::run(g, a),
        Command::Pause(a) => pause::pause(g, a),
        Command::Unpause(a) => pause::unpause(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Logs(a) => logs::run(g, a),
        Command::Port(a) => port::run(g, a),
        Command::Ps(a) => ps::run(g, a),
        Command::Rm(a) => rm::run(g, a),
        Command::Inspect(a) => inspect::run(g, a),
        Command::Images(a) => images::run(g, a),
        Command::Rmi(a) => rmi::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::History(a) => history::run(g, a),
        // a group's verb is its top-level twin
        Command::Image(a) => run_command(g, a.command.into()),
        Command::Container(a) => run_command(g, a.command.into()),
        Command::Load(a) => load::run(g, a),
        Command::Save(a) => save::run(g, a),
        Command::Import(a) => import::run(g, a),
        Command::Pull(a) => pull::run(g, a),
        Command::Push(a) => push::run(g, a),
        Command::Login(a) => login::login(g, a),
        Command::Logout(a) => login::logout(g, a),
        Command::Manifest(a) => manifest::run(g, a),
        Command::Info(a) => info::run(g, a),
        Command::Unshare(a) => unshare::run(g, a),
        Command::Completion(a) => completion::run(g, a),
        Command::GenerateDocs { dir } => {
            docs::write_to(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("rbox version {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
