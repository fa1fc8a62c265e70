//! `rbox rm`: remove containers: their record and name (`state`), then their layer directory
//! (files owned by mapped ids, so from inside rbox's user namespace). `-f` kills a running one
//! first (through the runtime's `stop_container`, which signals the rbox process attached to
//! the container and waits on a pidfd, never by sleeping).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};

use super::targets::{All, Latest, Targets};
use crate::cli::complete;
use crate::context::Context;
use crate::exit::{self, CodedError};
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
    #[command(flatten)]
    pub latest: Latest,
    /// Remove the containers that pass these filters (KEY=VALUE, as `ps --filter` takes them)
    #[arg(long = "filter", value_name = "KEY=VALUE", add = complete::ps_filter_candidates())]
    pub filter: Vec<String>,
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
    /// Ignore containers that do not exist (as -f does)
    #[arg(short = 'i', long)]
    pub ignore: bool,
    /// Remove the containers that join each one's network or require it first (and theirs,
    /// and so on)
    #[arg(long)]
    pub depend: bool,
    /// Read the id of a container to remove from FILE (as `run --cidfile` writes it)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Vec<std::path::PathBuf>,
    /// Containers to remove (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: RmArgs) -> Result<ExitCode> {
    // rbox returns once the containers are renamed away
    runtime::monitor::exit_follows_removal();
    let mut names =
        a.latest
            .names_or_filtered(g, &a.containers, a.all, !a.cidfile.is_empty(), &a.filter)?;
    if a.depend {
        names = with_dependents(g, &names)?;
    }
    let all = if a.all { All::Every } else { All::No };
    // -f: a container that does not exist is no error, as Podman has it; else podman-rm(1)
    // exits 1 for it, having removed nothing
    let mut targets = Targets::gather(
        g,
        all,
        &super::targets::with_cidfiles(&names, &a.cidfile)?,
        a.ignore || a.force,
    )?
    .all_found(exit::NOT_KNOWN)?;
    targets.step_codes_exit();
    // Decide and kill outside the namespace; remove the storage inside it.
    targets.keep(|rec| prepare(g, rec, a.force, a.time));
    if targets.is_empty() {
        return targets.finish(|_| Ok(()));
    }
    let store = runtime::open_store(g)?;
    // A container is gone once its directory is renamed away (`ps -a` no longer lists it,
    // its name is free); deleting its files (from 1-2 ms for a fresh container to seconds
    // for a big upper layer) waits until rbox has returned, in a child left behind.
    let mut detached = Vec::new();
    let code = targets.finish(|rec| remove_storage(g, &store, rec, a.volumes, &mut detached));
    runtime::monitor::delete_later(&store, detached, None);
    code
}

/// After [`prepare`], inside the user namespace (the store open): rename the container's
/// storage away into `detached` (for [`runtime::monitor::delete_later`]), and with `volumes`
/// (`-v`) remove its anonymous volumes.
pub fn remove_storage(
    g: &Context,
    store: &rbox_storage::Store,
    rec: &ContainerRecord,
    volumes: bool,
    detached: &mut Vec<rbox_storage::Detached>,
) -> Result<()> {
    match store.detach_container_dir(&rec.id) {
        Ok(d) => detached.extend(d),
        Err(rbox_storage::Error::ContainerNotFound(_)) => {}
        Err(e) => return Err(anyhow!("remove storage of container {}: {e}", rec.name)),
    }
    if volumes {
        runtime::volumes::remove_anonymous(g, store, rec);
    }
    Ok(())
}

/// The containers that join container `id`'s network or `--requires` it.
fn dependents<'a>(
    all: &'a [ContainerRecord],
    id: &'a str,
) -> impl Iterator<Item = &'a ContainerRecord> {
    all.iter().filter(move |d| {
        (d.spec.network == state::NetworkMode::Container && d.spec.network_options == id)
            || d.spec.opts.requires.iter().any(|r| r == id)
    })
}

/// `--depend`: each of `names` after the containers that depend on it, deepest first, all by
/// full id (as Podman prints them); a name not found stays for `rm` to report.
fn with_dependents(g: &Context, names: &[String]) -> Result<Vec<String>> {
    fn visit(all: &[ContainerRecord], id: &str, out: &mut Vec<String>) {
        for d in dependents(all, id) {
            visit(all, &d.id, out);
        }
        if !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
    }
    let all = state::list(g)?;
    let mut out = Vec::new();
    for n in names {
        match state::lookup(g, n) {
            Ok(r) => visit(&all, &r.id, &mut out),
            Err(_) => out.push(n.clone()),
        }
    }
    Ok(out)
}

/// Refuse (or with `force`, kill) a running container, then forget its record and name.
/// Called before entering the user namespace: the record, the name and the live state belong
/// to the user, and the runtime directory is found by the real uid.
pub fn prepare(g: &Context, rec: &ContainerRecord, force: bool, time: u64) -> Result<()> {
    // As Podman: never with containers that join its network or require it (even with -f):
    // they could not start again, and a running one would keep a namespace nobody can name
    let all = state::list(g)?;
    let deps: Vec<&str> = dependents(&all, &rec.id).map(|d| d.id.as_str()).collect();
    if !deps.is_empty() {
        // Podman's words
        bail!(
            "container {} has dependent containers which must be removed before it: {}: \
             container already exists",
            rec.id,
            deps.join(", ")
        );
    }
    if state::is_running(rec) {
        if !force {
            // Podman's words and exit code
            return Err(CodedError::new(
                exit::STATE_IMPROPER,
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
