//! PLACEHOLDER (being written): `rbox completion`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: CompletionArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox completion is not implemented yet")
}
