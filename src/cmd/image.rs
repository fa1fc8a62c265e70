//! PLACEHOLDER (being written): `rbox image`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: ImageArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox image is not implemented yet")
}
