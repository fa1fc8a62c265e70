//! PLACEHOLDER (being written): `rbox info`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: InfoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox info is not implemented yet")
}
