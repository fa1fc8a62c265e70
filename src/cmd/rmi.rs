//! PLACEHOLDER (being written): `rbox rmi`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: RmiArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox rmi is not implemented yet")
}
