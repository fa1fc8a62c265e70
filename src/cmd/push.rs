//! PLACEHOLDER (being written): `rbox push`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: PushArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox push is not implemented yet")
}
