//! `rbox rm`: remove containers: their record and name (`state`), then their layer directory
//! (files owned by mapped ids, so from inside rbox's user namespace). `-f` kills a running one
//! first (through the runtime's `stop_container`, which signals the rbox process attached to
//! the container and waits on a pidfd, never by sleeping).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};

use super::targets::{All, Targets};
use crate::cli::complete;
use crate::context::Context;
use crate::exit;
use crate::runtime;
use crate::state::{self, ContainerRecord};

#[derive(Debug, Clone, clap::Args)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove all containers
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Remove the containers' anonymous volumes too (those no other container uses)
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// With -f, seconds to wait for the stop signal before SIGKILL (default 0: kill at once,
    /// as `docker rm -f` does; podman waits 10)
    #[arg(
        short = 't',
        long = "time",
        value_name = "SECONDS",
        default_value_t = 0
    )]
    pub time: u64,
    /// Ignore containers that do not exist
    #[arg(short = 'i', long)]
    pub ignore: bool,
    /// Read the id of a container to remove from FILE (as `run --cidfile` writes it)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Vec<std::path::PathBuf>,
    /// Containers to remove (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present_any = ["all", "cidfile"], add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: RmArgs) -> Result<ExitCode> {
    if a.all && !a.containers.is_empty() {
        bail!("--all and container names cannot be used together");
    }
    let all = if a.all { All::Every } else { All::No };
    let mut targets = Targets::gather(
        g,
        all,
        &super::targets::with_cidfiles(&a.containers, &a.cidfile)?,
        a.ignore,
    )?;
    // podman-rm(1): exit 1 when the only failures are containers that do not exist.
    targets.unknown_exits(exit::NOT_KNOWN);
    // Decide and kill outside the namespace; remove the storage inside it.
    targets.keep(|rec| prepare(g, rec, a.force, a.time));
    if targets.is_empty() {
        return targets.finish(|_| Ok(()));
    }
    let store = runtime::open_store(g)?;
    targets.finish(|rec| {
        match store.remove_container_dir(&rec.id) {
            Ok(()) | Err(rbox_storage::Error::ContainerNotFound(_)) => {}
            Err(e) => return Err(anyhow!("remove storage of container {}: {e}", rec.name)),
        }
        if a.volumes {
            runtime::volumes::remove_anonymous(g, &store, rec);
        }
        Ok(())
    })
}

/// Refuse (or with `force`, kill) a running container, then forget its record and name.
/// Called before entering the user namespace: the record, the name and the live state belong
/// to the user, and the runtime directory is found by the real uid.
pub fn prepare(g: &Context, rec: &ContainerRecord, force: bool, time: u64) -> Result<()> {
    // As Podman: never with containers that join its network (even with -f): they could not
    // start again, and a running one would keep a namespace nobody can name
    let dependents: Vec<String> = state::list(g)?
        .into_iter()
        .filter(|d| {
            d.spec.network == state::NetworkMode::Container && d.spec.network_options == rec.id
        })
        .map(|d| d.name)
        .collect();
    if !dependents.is_empty() {
        bail!(
            "container {} has containers that join its network: remove them first ({})",
            rec.name,
            dependents.join(", ")
        );
    }
    if state::is_running(rec) {
        if !force {
            // Podman's words and exit code (podman-rm(1): 2 for a running container)
            return Err(exit::CodedError::new(
                exit::IN_USE,
                format!(
                    "cannot remove container {} as it is running - running or paused containers \
                     cannot be removed without force: container state improper",
                    rec.id
                ),
            )
            .into());
        }
        runtime::stop_container(g, rec, Duration::from_secs(time))
            .with_context(|| format!("stop container {}", rec.name))?;
        // Never forget a container whose processes still run: they would be orphans nobody
        // can name any more.
        let pid = rec.state.pid;
        // a zombie, or an init in its exit path, counts as gone
        if pid > 0 && state::proc_start_time(pid).is_some() {
            bail!(
                "container {} did not stop: its init (pid {pid}) still runs; kill it as root and retry",
                rec.name
            );
        }
    }
    // exited, with a monitor waiting to restart it (its restart policy): it goes too
    runtime::control::end_restart_wait(g, rec);
    runtime::control::cleanup_network(g, rec);
    runtime::create::remove_cgroup(rec);
    // mounted by `rbox mount` (Podman removes a mounted container too)
    super::mount::release(g, rec);
    state::remove(g, rec).with_context(|| format!("remove container {}", rec.name))
}
