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
pub struct UpdateArgs {
    /// Memory limit (a size: 512m, 1g)
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap limit (a size, -1 for unlimited)
    #[arg(long = "memory-swap", value_name = "SIZE")]
    pub memory_swap: Option<String>,
    /// Memory soft limit (a size)
    #[arg(long = "memory-reservation", value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// How readily the kernel swaps the container's memory, 0 to 100 (cgroup v1)
    #[arg(
        long = "memory-swappiness",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub memory_swappiness: Option<i64>,
    /// Number of CPUs (1.5)
    #[arg(long = "cpus", value_name = "N")]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "SHARES")]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "NODES")]
    pub cpuset_mems: Option<String>,
    /// CPU time the container may use in each --cpu-period, in microseconds
    #[arg(
        long = "cpu-quota",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    pub cpu_quota: Option<i64>,
    /// The period --cpu-quota counts in, in microseconds
    #[arg(long = "cpu-period", value_name = "MICROSECONDS")]
    pub cpu_period: Option<u64>,
    /// The CPU real-time period in microseconds (cgroup v1)
    #[arg(long = "cpu-rt-period", value_name = "MICROSECONDS")]
    pub cpu_rt_period: Option<u64>,
    /// The CPU real-time runtime in microseconds per period (cgroup v1)
    #[arg(
        long = "cpu-rt-runtime",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    pub cpu_rt_runtime: Option<i64>,
    /// Block IO weight, 10 to 1000 (relative)
    #[arg(long = "blkio-weight", value_name = "WEIGHT")]
    pub blkio_weight: Option<u16>,
    /// Block IO weight of one device, DEVICE:WEIGHT (10 to 1000)
    #[arg(long = "blkio-weight-device", value_name = "DEVICE:WEIGHT")]
    pub blkio_weight_device: Vec<String>,
    /// Limit the read rate from a device, DEVICE:RATE (bytes per second; kb, mb, gb)
    #[arg(long = "device-read-bps", value_name = "DEVICE:RATE")]
    pub device_read_bps: Vec<String>,
    /// Limit the write rate to a device, DEVICE:RATE (bytes per second; kb, mb, gb)
    #[arg(long = "device-write-bps", value_name = "DEVICE:RATE")]
    pub device_write_bps: Vec<String>,
    /// Limit the read rate from a device, DEVICE:RATE (IO per second)
    #[arg(long = "device-read-iops", value_name = "DEVICE:RATE")]
    pub device_read_iops: Vec<String>,
    /// Limit the write rate to a device, DEVICE:RATE (IO per second)
    #[arg(long = "device-write-iops", value_name = "DEVICE:RATE")]
    pub device_write_iops: Vec<String>,
    /// Limit of the container's processes (-1 for unlimited)
    #[arg(long = "pids-limit", value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
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
    let given = spec::resource_flags(&spec::ExtraFlags {
        memory: a.memory,
        memory_swap: a.memory_swap,
        memory_reservation: a.memory_reservation,
        memory_swappiness: a.memory_swappiness,
        cpus: a.cpus,
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
        cpu_quota: a.cpu_quota,
        cpu_period: a.cpu_period,
        cpu_rt_period: a.cpu_rt_period,
        cpu_rt_runtime: a.cpu_rt_runtime,
        blkio_weight: a.blkio_weight,
        blkio_weight_device: a.blkio_weight_device,
        device_read_bps: a.device_read_bps,
        device_write_bps: a.device_write_bps,
        device_read_iops: a.device_read_iops,
        device_write_iops: a.device_write_iops,
        pids_limit: a.pids_limit,
        ..Default::default()
    })?;
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
        state::set_restart(g, &rec, r)
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
        state::set_resources(g, &rec, new)
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
