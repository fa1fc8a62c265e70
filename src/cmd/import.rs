//! PLACEHOLDER (being written): `rbox import`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: ImportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox import is not implemented yet")
}
