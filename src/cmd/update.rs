//! `rbox update` (and `container update`): change the resource limits of a container, as
//! Podman's `update` does (Docker's too): the flags are `run`'s limit flags, each given one
//! replaces the recorded value and the others stay. A running container gets the new limits
//! in its cgroup at once (as root, or rootless where a cgroup v2 subtree is delegated; a
//! rootless container on cgroup v1 cannot be updated, as with Podman); every container keeps
//! them for its next start. `--restart` changes the restart policy (Docker's and Podman 5's
//! update have it). Prints the container's id.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::{cgroup, spec};
use crate::state::{self, DeviceLimit, Resources};

#[derive(Debug, Clone, clap::Args)]
// Podman's `update` has `-c` for --cpu-shares, which `run` leaves out (it would take a
// command's own `-c` after the image)
#[command(mut_arg("cpu_shares", |a| a.short('c')))]
pub struct UpdateArgs {
    #[command(flatten)]
    pub limits: super::run::LimitFlags,
    /// A new restart policy: no, on-failure[:N], always, unless-stopped (as Docker's and
    /// Podman 5's update; a running container's monitor follows it at the command's next exit)
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// The container (name or id)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: String,
}

pub fn run(g: &Context, a: UpdateArgs) -> Result<ExitCode> {
    let rec = state::lookup(g, &a.container)?;
    let given = spec::resource_flags(&a.limits.extra())?;
    let restart = a
        .restart
        .as_deref()
        .map(state::RestartPolicy::parse)
        .transpose()?;
    if rec.auto_remove && restart.as_ref().is_some_and(|r| r.restarts()) {
        // Podman's text for the same conflict at create
        bail!("the --rm option conflicts with --restart, when the restartPolicy is not \"\" and \"no\"");
    }
    if let Some(r) = restart.filter(|r| *r != rec.spec.restart) {
        state::update(g, &rec, |c| c.spec.restart = r)
            .with_context(|| format!("record the restart policy of container {}", rec.name))?;
    }
    let old = &rec.spec.opts.resources;
    let new = merged(old, &given);
    if new != *old {
        let live = state::live_pids(g, &rec)
            .filter(|_| state::is_running(&rec))
            .map(|(p, _)| p);
        if let Some(init) = live {
            apply(&rec, old, &new, init)
                .with_context(|| format!("update the resource limits of container {}", rec.name))?;
        }
        state::update(g, &rec, |c| c.spec.opts.resources = new)
            .with_context(|| format!("record the resource limits of container {}", rec.name))?;
    }
    println!("{}", rec.id);
    Ok(ExitCode::SUCCESS)
}

/// `old` with every limit `given` sets (a per-device limit replaces the one of the same kind
/// on the same device).
fn merged(old: &Resources, given: &Resources) -> Resources {
    let mut r = old.clone();
    macro_rules! take {
        ($($f:ident),*) => {
            $(if given.$f.is_some() {
                r.$f = given.$f.clone();
            })*
        };
    }
    take!(
        memory,
        memory_swap,
        memory_reservation,
        memory_swappiness,
        nano_cpus,
        cpu_shares,
        cpuset_cpus,
        cpuset_mems,
        cpu_quota,
        cpu_period,
        cpu_rt_period,
        cpu_rt_runtime,
        blkio_weight,
        pids_limit
    );
    // --cpus and --cpu-quota/--cpu-period are two spellings of one limit: the new one wins
    if given.nano_cpus.is_some() {
        r.cpu_quota = None;
        r.cpu_period = None;
    } else if given.cpu_quota.is_some() || given.cpu_period.is_some() {
        r.nano_cpus = None;
    }
    for d in &given.device_limits {
        let same = |o: &DeviceLimit| o.kind == d.kind && (o.major, o.minor) == (d.major, d.minor);
        r.device_limits.retain(|o| !same(o));
        r.device_limits.push(*d);
    }
    r
}

/// The new limits in the cgroup of running container `rec` (init `init`).
fn apply(rec: &state::ContainerRecord, old: &Resources, new: &Resources, init: i32) -> Result<()> {
    if rec.spec.opts.cgroups_disabled {
        bail!("it runs with --cgroups=disabled: it has no cgroup of its own");
    }
    if cgroup::host_root() {
        let path = format!("/rbox/{}", rec.id);
        if old.is_default() {
            // started without limits, so without a cgroup of its own: made now, and every
            // process of the container moved in
            let p = cgroup::Placement::create(&path, &cgroup::to_oci(new), init)?;
            for pid in crate::runtime::procs::pids(init)? {
                p.add(pid)?;
            }
            return Ok(());
        }
        return cgroup::Placement::of(&path).update(&cgroup::to_oci(new));
    }
    match cgroup::delegated(&cgroup::needed(new)) {
        Some(dir) => {
            cgroup::apply(&dir, &rec.id, new, init)?;
            if old.is_default() {
                for pid in crate::runtime::procs::pids(init)? {
                    cgroup::join_delegated(&dir, &rec.id, pid)?;
                }
            }
            Ok(())
        }
        None if cgroup::unified_only() => bail!(
            "no cgroup v2 subtree with these controllers is delegated to you: a rootless container's limits cannot change"
        ),
        None => bail!(
            "Resource limits are not supported on cgroups V1 rootless systems: a rootless container's limits cannot change"
        ),
    }
}
