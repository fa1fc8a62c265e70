//! PLACEHOLDER (being written): `rbox login` and `rbox logout`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    pub registry: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    pub registry: Option<String>,
}

pub fn login(_g: &GlobalArgs, _a: LoginArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox login is not implemented yet")
}

pub fn logout(_g: &GlobalArgs, _a: LogoutArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rbox logout is not implemented yet")
}
