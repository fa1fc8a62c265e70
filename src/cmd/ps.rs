//! PLACEHOLDER (being written): `rbox ps`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: PsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox ps is not implemented yet")
}
