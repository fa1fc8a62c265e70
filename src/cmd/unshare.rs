//! PLACEHOLDER (being written): `rbox unshare`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct UnshareArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: UnshareArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox unshare is not implemented yet")
}
