//! The container runtime (being written).

use std::process::ExitCode;

pub fn run(_g: &crate::cli::GlobalArgs, _a: crate::cmd::run::RunArgs, _start: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("run is not implemented yet")
}
