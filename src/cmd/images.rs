//! PLACEHOLDER (being written): `rbox images`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: ImagesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox images is not implemented yet")
}
