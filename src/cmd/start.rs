//! PLACEHOLDER (being written): `rbox start`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: StartArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox start is not implemented yet")
}
