//! `rbox unshare [CMD...]`: run a command (default `$SHELL`) inside rbox's user namespace, as
//! root over the mapped ids, e.g. to inspect or remove files in the store owned by mapped ids.
//! The command replaces rbox (exec), so its exit status is the caller's.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result};

use crate::context::Context;
use crate::exit::{CodedError, CANNOT_INVOKE, NOT_FOUND};

#[derive(Debug, Clone, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct UnshareArgs {
    /// Command and arguments (default: $SHELL, else /bin/sh)
    #[arg(value_name = "COMMAND", allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(g: &Context, a: UnshareArgs) -> Result<ExitCode> {
    let root = g.storage_root()?;
    crate::runtime::userns::enter(g)?;
    if crate::runtime::userns::inside_rbox() {
        // A mount namespace of the command's own, owned by rbox's user namespace, as `podman
        // unshare` gives: there `rbox mount` can mount (the host's namespace refuses a user
        // namespace's mounts). Host mounts still propagate in.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .context("create mount namespace")?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .context("make mounts slaves of the host's")?;
    }
    let argv = if a.command.is_empty() {
        vec![std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into())]
    } else {
        a.command
    };
    let err = Command::new(&argv[0])
        .args(&argv[1..])
        // Like `podman unshare`: tell the command where the store is.
        .env("RBOX_ROOT", &root)
        .exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_INVOKE
    };
    Err(CodedError::new(code, format!("run `{}`: {err}", argv[0])).into())
}
