//! PLACEHOLDER (being written): `rbox rm`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: RmArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox rm is not implemented yet")
}
