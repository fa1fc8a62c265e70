//! PLACEHOLDER (being written): `rbox load`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox load is not implemented yet")
}
