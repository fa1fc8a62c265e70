//! PLACEHOLDER (being written): `rbox pull`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: PullArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox pull is not implemented yet")
}
