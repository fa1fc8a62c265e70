//! PLACEHOLDER (being written): `rbox history`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: HistoryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox history is not implemented yet")
}
