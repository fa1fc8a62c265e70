//! PLACEHOLDER (being written): `rbox inspect`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox inspect is not implemented yet")
}
