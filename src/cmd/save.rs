//! PLACEHOLDER (being written): `rbox save`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: SaveArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox save is not implemented yet")
}
