//! PLACEHOLDER (being written): `rbox manifest`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_g: &GlobalArgs, _a: ManifestArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox manifest is not implemented yet")
}
