//! PLACEHOLDER (being written): `rbox tag`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: TagArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox tag is not implemented yet")
}
