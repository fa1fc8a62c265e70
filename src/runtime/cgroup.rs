//! A container's cgroup and its resource limits (`--memory`, `--cpus`, `--pids-limit`, an
//! OCI bundle's `linux.resources`).
//!
//! As root, the container gets a cgroup of its own (`linux.cgroupsPath`, or `/rbox/ID`) in
//! every cgroup v1 hierarchy on a v1 or hybrid host (and in the hybrid's unified tree, for
//! membership), or in the v2 tree on a pure v2 host; the limits are written there, the init
//! is moved in before it execs, and the directories are removed at delete. What to write is
//! a plan computed from the spec's resources ([`v1_plan`], [`v2_plan`]); [`Placement`]
//! executes it. Rootless, where a cgroup v2 subtree is delegated to the user (a writable
//! directory of their own whose `cgroup.subtree_control` enables the controllers), a child
//! cgroup per container gets the limits and the init. Elsewhere (cgroup v1, or no
//! delegation, as on hosts without systemd) the limits are recorded only, with one warning,
//! as Podman's `--cgroups=disabled`. Owns no other cgroup handling: the container's
//! /sys/fs/cgroup mount is in `oci`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::LinuxResources;

use crate::state::{DeviceLimitKind, Resources};

/// The controllers the limits in `r` need.
pub fn needed(r: &Resources) -> Vec<&'static str> {
    let mut v = Vec::new();
    if r.memory.is_some()
        || r.memory_swap.is_some()
        || r.memory_reservation.is_some()
        || r.memory_swappiness.is_some()
        || r.oom_kill_disable
    {
        v.push("memory");
    }
    if r.nano_cpus.is_some()
        || r.cpu_shares.is_some()
        || r.cpu_quota.is_some()
        || r.cpu_period.is_some()
    {
        v.push("cpu");
    }
    if r.cpuset_cpus.is_some() || r.cpuset_mems.is_some() {
        v.push("cpuset");
    }
    if r.blkio_weight.is_some() || !r.device_limits.is_empty() {
        v.push("io");
    }
    if r.pids_limit.is_some() {
        v.push("pids");
    }
    for k in r.cgroup_conf.keys() {
        if let Some(c) = v2_controller_of(k).filter(|c| !v.contains(c)) {
            v.push(c);
        }
    }
    v
}

/// The delegated cgroup v2 directory of this process, given the cgroup2 mount `fs_root` and
/// the text of /proc/self/cgroup: the unified (`0::`) entry's directory, when it is writable
/// and enables every controller of `needed` for its children.
pub fn delegated_in(fs_root: &Path, self_cgroup: &str, needed: &[&str]) -> Option<PathBuf> {
    let rel = self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = fs_root.join(rel.trim_start_matches('/'));
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).ok()?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    if !needed.iter().all(|c| enabled.contains(c)) {
        return None;
    }
    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).ok()?;
    Some(dir)
}

/// [`delegated_in`] for this process on this host.
pub fn delegated(needed: &[&str]) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    delegated_in(Path::new("/sys/fs/cgroup"), &text, needed)
}

/// The files of a container's cgroup and what goes in them.
pub fn limits(r: &Resources) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    if let Some(m) = r.memory {
        v.push(("memory.max", m.to_string()));
    }
    if let Some(s) = r.memory_swap {
        let swap = match (s, r.memory) {
            (-1, _) => "max".to_string(),
            (s, Some(m)) => (s - m).max(0).to_string(),
            (s, None) => s.to_string(),
        };
        v.push(("memory.swap.max", swap));
    }
    if let Some(m) = r.memory_reservation {
        v.push(("memory.low", m.to_string()));
    }
    if let Some(n) = r.nano_cpus {
        v.push(("cpu.max", format!("{} 100000", n / 10_000)));
    } else if r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let quota = match r.cpu_quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".into(),
        };
        v.push((
            "cpu.max",
            format!("{quota} {}", r.cpu_period.unwrap_or(100_000)),
        ));
    }
    if let Some(s) = r.cpu_shares {
        // the shares-to-weight conversion of the OCI runtimes (2..262144 -> 1..10000)
        let s = s.clamp(2, 262_144);
        v.push(("cpu.weight", (1 + ((s - 2) * 9999) / 262_142).to_string()));
    }
    if let Some(c) = &r.cpuset_cpus {
        v.push(("cpuset.cpus", c.clone()));
    }
    if let Some(m) = &r.cpuset_mems {
        v.push(("cpuset.mems", m.clone()));
    }
    if let Some(w) = r.blkio_weight {
        v.push(("io.bfq.weight", w.to_string()));
    }
    for d in &r.device_limits {
        let dev = format!("{}:{}", d.major, d.minor);
        v.push(match d.kind {
            DeviceLimitKind::Weight => ("io.bfq.weight", format!("{dev} {}", d.value)),
            k => {
                let key = match k {
                    DeviceLimitKind::ReadBps => "rbps",
                    DeviceLimitKind::WriteBps => "wbps",
                    DeviceLimitKind::ReadIops => "riops",
                    _ => "wiops",
                };
                ("io.max", format!("{dev} {key}={}", d.value))
            }
        });
    }
    if let Some(p) = r.pids_limit {
        v.push((
            "pids.max",
            if p <= 0 { "max".into() } else { p.to_string() },
        ));
    }
    v
}

/// Put the container's init (`pid`) in a cgroup of its own below `dir`, with the limits.
pub fn apply(dir: &Path, id: &str, r: &Resources, pid: i32) -> Result<()> {
    let cg = dir.join(format!("rbox-{id}"));
    match std::fs::create_dir(&cg) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create cgroup `{}`", cg.display())),
    }
    // `--cgroup-conf`'s files after the flags' own, as the OCI runtimes write `unified`
    let conf = r.cgroup_conf.iter().map(|(k, v)| (k.as_str(), v.clone()));
    for (file, value) in limits(r).into_iter().chain(conf) {
        let p = cg.join(file);
        std::fs::write(&p, &value)
            .with_context(|| format!("write `{value}` to `{}`", p.display()))?;
    }
    let procs = cg.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string())
        .with_context(|| format!("move pid {pid} to `{}`", procs.display()))
}

/// One mounted cgroup hierarchy: where, which controllers (v1; `name=systemd` for a named
/// one), and this process's cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
    pub v2: bool,
    pub own: String,
}

/// The v1 superblock options that are not controllers.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
];

/// The cgroup hierarchies of /proc/self/mountinfo (`mountinfo`), each once, with this
/// process's place in them from /proc/self/cgroup (`self_cgroup`).
pub fn hierarchies_in(mountinfo: &str, self_cgroup: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let v2 = match post[0] {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let mut controllers: Vec<String> = if v2 {
            Vec::new()
        } else {
            post[2]
                .split(',')
                .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
                .map(str::to_string)
                .collect()
        };
        controllers.sort();
        if out
            .iter()
            .any(|h| h.v2 == v2 && h.controllers == controllers)
        {
            continue;
        }
        let own = self_cgroup
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, names, path) = (f.next()?, f.next()?, f.next()?);
                let mut names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
                names.sort();
                (if v2 {
                    names.is_empty()
                } else {
                    names == controllers
                })
                .then(|| path.to_string())
            })
            .unwrap_or_else(|| "/".into());
        out.push(Hierarchy {
            mount: PathBuf::from(pre[4].replace("\\040", " ")),
            controllers,
            v2,
            own,
        });
    }
    out
}

/// [`hierarchies_in`] for this process.
pub fn hierarchies() -> Vec<Hierarchy> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    hierarchies_in(&mi, &cg)
}

/// The container's directory in `h`: an absolute `path` from the hierarchy's root, a
/// relative one below this process's own cgroup (as runc and crun place them).
pub fn dir_in(h: &Hierarchy, path: &str) -> PathBuf {
    if let Some(abs) = path.strip_prefix('/') {
        h.mount.join(abs)
    } else {
        h.mount.join(h.own.trim_start_matches('/')).join(path)
    }
}

/// One write of a plan: the controller whose hierarchy holds `file` (v1; empty on v2),
/// the file and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
    }
}

/// The device nodes every container gets (null, zero, full, random, urandom, tty, console,
/// ptmx and the pts), allowed after the spec's own device rules as runc and crun do.
const DEFAULT_DEVICES: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// The cgroup v1 files for `r`, in the order they must be written (a limit before the
/// memory+swap limit above it, a period before its quota, the devices' deny-all first).
#[allow(deprecated)] // kernel memory limits: the spec still has them, v1 kernels take them
pub fn v1_plan(r: &LinuxResources) -> Vec<Write> {
    let mut v = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(x) = m.limit() {
            v.push(w("memory", "memory.limit_in_bytes", x));
        }
        if let Some(x) = m.reservation() {
            v.push(w("memory", "memory.soft_limit_in_bytes", x));
        }
        if let Some(x) = m.swap() {
            v.push(w("memory", "memory.memsw.limit_in_bytes", x));
        }
        if let Some(x) = m.kernel() {
            v.push(w("memory", "memory.kmem.limit_in_bytes", x));
        }
        if let Some(x) = m.kernel_tcp() {
            v.push(w("memory", "memory.kmem.tcp.limit_in_bytes", x));
        }
        if let Some(x) = m.swappiness() {
            v.push(w("memory", "memory.swappiness", x));
        }
        if m.disable_oom_killer() == Some(true) {
            v.push(w("memory", "memory.oom_control", 1));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(x) = c.shares() {
            v.push(w("cpu", "cpu.shares", x));
        }
        if let Some(x) = c.period() {
            v.push(w("cpu", "cpu.cfs_period_us", x));
        }
        if let Some(x) = c.quota() {
            v.push(w("cpu", "cpu.cfs_quota_us", x));
        }
        if let Some(x) = c.realtime_period() {
            v.push(w("cpu", "cpu.rt_period_us", x));
        }
        if let Some(x) = c.realtime_runtime() {
            v.push(w("cpu", "cpu.rt_runtime_us", x));
        }
        if let Some(x) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            v.push(w("cpuset", "cpuset.cpus", x));
        }
        if let Some(x) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            v.push(w("cpuset", "cpuset.mems", x));
        }
    }
    if let Some(p) = r.pids() {
        let l = p.limit();
        v.push(w(
            "pids",
            "pids.max",
            if l <= 0 { "max".into() } else { l.to_string() },
        ));
    }
    if let Some(b) = r.block_io() {
        if let Some(x) = b.weight() {
            v.push(w("blkio", "blkio.weight", x));
        }
        if let Some(x) = b.leaf_weight() {
            v.push(w("blkio", "blkio.leaf_weight", x));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(x) = d.weight() {
                v.push(w(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {x}", d.major(), d.minor()),
                ));
            }
            if let Some(x) = d.leaf_weight() {
                let value = format!("{}:{} {x}", d.major(), d.minor());
                v.push(w("blkio", "blkio.leaf_weight_device", value));
            }
        }
        for (file, list) in [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ] {
            for d in list.iter().flatten() {
                v.push(w(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        let file = format!("hugetlb.{}.limit_in_bytes", h.page_size());
        v.push(w("hugetlb", file, h.limit()));
    }
    if let Some(n) = r.network() {
        if let Some(x) = n.class_id() {
            v.push(w("net_cls", "net_cls.classid", x));
        }
        for p in n.priorities().iter().flatten() {
            v.push(w(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    if let Some(ds) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        for d in ds {
            let n = |x: Option<i64>| x.filter(|x| *x >= 0).map_or("*".into(), |x| x.to_string());
            let typ = d.typ().unwrap_or_default();
            let rule = if typ.as_str() == "a" {
                "a".to_string()
            } else {
                let access = d.access().clone().unwrap_or_else(|| "rwm".into());
                format!(
                    "{} {}:{} {access}",
                    typ.as_str(),
                    n(d.major()),
                    n(d.minor())
                )
            };
            let file = if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            v.push(w("devices", file, rule));
        }
        for d in DEFAULT_DEVICES {
            v.push(w("devices", "devices.allow", d));
        }
    }
    v
}

/// The cgroup v2 files for `r` (the v1 values converted as runc and crun convert them:
/// swap is memory plus swap there, the shares become a weight).
pub fn v2_plan(r: &LinuxResources) -> Vec<Write> {
    let mut v = Vec::new();
    let max = |x: i64| {
        if x < 0 {
            "max".to_string()
        } else {
            x.to_string()
        }
    };
    if let Some(m) = r.memory() {
        if let Some(x) = m.limit() {
            v.push(w("", "memory.max", max(x)));
        }
        if let Some(x) = m.reservation() {
            v.push(w("", "memory.low", max(x)));
        }
        if let Some(s) = m.swap() {
            let swap = match (s, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l >= 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            v.push(w("", "memory.swap.max", swap));
        }
        if m.disable_oom_killer() == Some(true) {
            v.push(w("", "memory.oom.group", 0));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            let s = s.clamp(2, 262_144);
            v.push(w("", "cpu.weight", 1 + ((s - 2) * 9999) / 262_142));
        }
        if c.quota().is_some() || c.period().is_some() {
            let quota = c.quota().map_or("max".into(), max);
            v.push(w(
                "",
                "cpu.max",
                format!("{quota} {}", c.period().unwrap_or(100_000)),
            ));
        }
        if let Some(x) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            v.push(w("", "cpuset.cpus", x));
        }
        if let Some(x) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            v.push(w("", "cpuset.mems", x));
        }
    }
    if let Some(p) = r.pids() {
        v.push(w(
            "",
            "pids.max",
            max(if p.limit() <= 0 { -1 } else { p.limit() }),
        ));
    }
    if let Some(b) = r.block_io() {
        if let Some(x) = b.weight() {
            v.push(w("", "io.bfq.weight", x));
        }
        for (key, list) in [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ] {
            for d in list.iter().flatten() {
                v.push(w(
                    "",
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        v.push(w("", format!("hugetlb.{}.max", h.page_size()), h.limit()));
    }
    // `unified` (`--cgroup-conf`): files named as they are, after the converted values
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, x) in unified {
        v.push(w("", k.as_str(), x));
    }
    v
}

/// The controller a v2 file belongs to (`memory.max`: `memory`).
fn v2_controller(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

/// The controller a v2 file belongs to (`memory.max`: `memory`), when it is one of the
/// controllers a delegated subtree must enable (not for `cgroup.*` files, which every cgroup
/// has).
fn v2_controller_of(file: &str) -> Option<&'static str> {
    let prefix = file.split('.').next().unwrap_or(file);
    ["memory", "cpu", "cpuset", "pids", "io", "hugetlb"]
        .into_iter()
        .find(|c| *c == prefix)
}

/// `rbox run`'s resource flags as the OCI spec's resources.
pub fn to_oci(r: &crate::state::Resources) -> LinuxResources {
    use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids};
    let mut out = LinuxResources::default();
    if r.memory.is_some()
        || r.memory_swap.is_some()
        || r.memory_reservation.is_some()
        || r.memory_swappiness.is_some()
        || r.oom_kill_disable
    {
        let mut m = LinuxMemory::default();
        m.set_limit(r.memory);
        m.set_swap(r.memory_swap);
        m.set_reservation(r.memory_reservation);
        m.set_swappiness(r.memory_swappiness);
        m.set_disable_oom_killer(r.oom_kill_disable.then_some(true));
        out.set_memory(Some(m));
    }
    if r.nano_cpus.is_some()
        || r.cpu_shares.is_some()
        || r.cpuset_cpus.is_some()
        || r.cpuset_mems.is_some()
        || r.cpu_quota.is_some()
        || r.cpu_period.is_some()
        || r.cpu_rt_period.is_some()
        || r.cpu_rt_runtime.is_some()
    {
        let mut c = LinuxCpu::default();
        c.set_realtime_period(r.cpu_rt_period);
        c.set_realtime_runtime(r.cpu_rt_runtime);
        c.set_shares(r.cpu_shares);
        if let Some(n) = r.nano_cpus {
            c.set_period(Some(100_000));
            c.set_quota(Some((n / 10_000) as i64));
        } else {
            c.set_period(r.cpu_period);
            c.set_quota(r.cpu_quota);
        }
        c.set_cpus(r.cpuset_cpus.clone());
        c.set_mems(r.cpuset_mems.clone());
        out.set_cpu(Some(c));
    }
    if r.blkio_weight.is_some() || !r.device_limits.is_empty() {
        use oci_spec::runtime::{LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder};
        // (the builders cannot fail: every field has a default)
        let mut b = oci_spec::runtime::LinuxBlockIo::default();
        b.set_weight(r.blkio_weight);
        let throttle = |kind: DeviceLimitKind| {
            let v: Vec<_> = r
                .device_limits
                .iter()
                .filter(|d| d.kind == kind)
                .filter_map(|d| {
                    LinuxThrottleDeviceBuilder::default()
                        .major(d.major as i64)
                        .minor(d.minor as i64)
                        .rate(d.value)
                        .build()
                        .ok()
                })
                .collect();
            (!v.is_empty()).then_some(v)
        };
        b.set_throttle_read_bps_device(throttle(DeviceLimitKind::ReadBps));
        b.set_throttle_write_bps_device(throttle(DeviceLimitKind::WriteBps));
        b.set_throttle_read_iops_device(throttle(DeviceLimitKind::ReadIops));
        b.set_throttle_write_iops_device(throttle(DeviceLimitKind::WriteIops));
        let weights: Vec<_> = r
            .device_limits
            .iter()
            .filter(|d| d.kind == DeviceLimitKind::Weight)
            .filter_map(|d| {
                LinuxWeightDeviceBuilder::default()
                    .major(d.major as i64)
                    .minor(d.minor as i64)
                    .weight(d.value as u16)
                    .build()
                    .ok()
            })
            .collect();
        b.set_weight_device((!weights.is_empty()).then_some(weights));
        out.set_block_io(Some(b));
    }
    if let Some(p) = r.pids_limit {
        let mut l = LinuxPids::default();
        l.set_limit(p);
        out.set_pids(Some(l));
    }
    if !r.cgroup_conf.is_empty() {
        out.set_unified(Some(r.cgroup_conf.clone().into_iter().collect()));
    }
    out
}

/// Whether rbox runs as root on the host (not as root of its own user namespace, where a
/// rootless rbox is after it re-enters): only then may it make cgroups outside a delegated
/// subtree.
pub fn host_root() -> bool {
    nix::unistd::geteuid().is_root() && super::userns::host_uid() == 0
}

/// Moves process `pid` into the cgroup [`apply`] made for container `id` below `dir`.
pub fn join_delegated(dir: &Path, id: &str, pid: i32) -> Result<()> {
    join(&dir.join(format!("rbox-{id}")), pid)
}

/// Whether the host has the cgroup v2 hierarchy alone (no v1 or hybrid hierarchies).
pub fn unified_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The one warning of a rootless container whose limits go unapplied: Podman's text on a
/// cgroup v1 (or hybrid) host, where nothing can be delegated; on v2, what is missing.
pub fn rootless_warning() -> &'static str {
    if unified_only() {
        "resource limits are recorded but not applied: no cgroup v2 subtree with these controllers is delegated to you"
    } else {
        "Resource limits are not supported and ignored on cgroups V1 rootless systems"
    }
}

/// Which of the v1 block I/O weight files (`blkio.weight`, `blkio.weight_device`) the host's
/// blkio hierarchy has: they exist only with a scheduler that weighs (CFQ before 5.0, none
/// with BFQ, whose files are `blkio.bfq.*`), and a write to a missing one fails, so the
/// weights are discarded at create with Podman's warnings instead. `None`: the host has no v1
/// blkio hierarchy (v2 alone, or none mounted).
pub fn v1_blkio_weights() -> Option<(bool, bool)> {
    let h = hierarchies()
        .into_iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == "blkio"))?;
    Some((
        h.mount.join("blkio.weight").exists(),
        h.mount.join("blkio.weight_device").exists(),
    ))
}

/// Whether `r` asks for more than device rules (which every `runc spec` bundle carries).
pub fn asks_limits(r: &LinuxResources) -> bool {
    r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.unified().as_ref().is_some_and(|u| !u.is_empty())
}

/// The controllers a v2 plan needs.
pub fn v2_needed(r: &LinuxResources) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for wr in v2_plan(r) {
        if let Some(c) = v2_controller_of(&wr.file).filter(|c| !v.contains(c)) {
            v.push(c);
        }
    }
    v
}

/// Rootless: the limits of `r` in a child `name` of the delegated cgroup v2 directory
/// `delegated`, with `pid` in it.
pub fn create_delegated(
    delegated: &Path,
    name: &str,
    r: &LinuxResources,
    pid: i32,
) -> Result<Placement> {
    let h = Hierarchy {
        mount: delegated.to_path_buf(),
        controllers: Vec::new(),
        v2: true,
        own: "/".into(),
    };
    let mut p = Placement::default();
    let res = p.create_in(&[h], name, r, pid);
    if res.is_err() {
        p.remove();
    }
    res.map(|()| p)
}

/// Files the kernel may no longer have or take (kernel memory limits went in 5.4-6.x): a
/// warning, not a failure, as with runc and crun.
const OPTIONAL: &[&str] = &[
    "memory.kmem.limit_in_bytes",
    "memory.kmem.tcp.limit_in_bytes",
];

/// A container's cgroup as root: its directory in each hierarchy, and those rbox made (to
/// remove at delete, deepest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub dirs: Vec<PathBuf>,
    pub made: Vec<PathBuf>,
}

impl Placement {
    /// The cgroup `path` (absolute or relative, see [`dir_in`]) with the limits of `r`, and
    /// `pid` moved in. On a v1 or hybrid host every v1 hierarchy gets the directory (and the
    /// hybrid's unified tree, without limits); on a pure v2 host the v2 tree, with the
    /// controllers enabled on the way down. A limit whose controller is not mounted is an
    /// error. On failure, what was made is removed.
    pub fn create(path: &str, r: &LinuxResources, pid: i32) -> Result<Placement> {
        let hs = hierarchies();
        let mut p = Placement::default();
        let res = p.create_in(&hs, path, r, pid);
        if res.is_err() {
            p.remove();
        }
        res.map(|()| p)
    }

    /// The directories [`Placement::create`] makes for `path` on this host, without making
    /// them (to remove a container's cgroup by its path).
    pub fn of(path: &str) -> Placement {
        let hs = hierarchies();
        let v1 = hs
            .iter()
            .any(|h| !h.v2 && h.controllers.iter().any(|c| !c.starts_with("name=")));
        Placement {
            dirs: hs
                .iter()
                .filter(|h| v1 || h.v2)
                .map(|h| dir_in(h, path))
                .collect(),
            made: Vec::new(),
        }
    }

    fn create_in(
        &mut self,
        hs: &[Hierarchy],
        path: &str,
        r: &LinuxResources,
        pid: i32,
    ) -> Result<()> {
        let v1 = hs
            .iter()
            .any(|h| !h.v2 && h.controllers.iter().any(|c| !c.starts_with("name=")));
        if v1 {
            let plan = v1_plan(r);
            // a limit nothing can apply is an error (the runtime spec: a value that cannot
            // be mapped to a kernel interface), as crun has it
            for wr in &plan {
                let c = wr.controller;
                if !hs.iter().any(|h| h.controllers.iter().any(|x| x == c)) {
                    bail!(
                        "apply `{}`: the cgroup controller `{c}` is not mounted on this host",
                        wr.file
                    );
                }
            }
            for h in hs {
                let dir = dir_in(h, path);
                let cpuset = h.controllers.iter().any(|c| c == "cpuset");
                self.make(&h.mount, &dir, cpuset)?;
                for wr in plan
                    .iter()
                    .filter(|wr| h.controllers.iter().any(|c| c == wr.controller))
                {
                    write(&dir, wr)?;
                }
            }
            // the init moves in once every limit is in place: a failure before leaves
            // empty cgroups that go at once
            for d in &self.dirs {
                join(d, pid)?;
            }
            return Ok(());
        }
        let Some(h) = hs.iter().find(|h| h.v2) else {
            bail!("no cgroup filesystem is mounted");
        };
        let dir = dir_in(h, path);
        let plan = v2_plan(r);
        // (`cgroup.*` files, which `--cgroup-conf` may name, are every cgroup's own)
        let mut wanted: Vec<&str> = plan
            .iter()
            .map(|wr| v2_controller(&wr.file))
            .filter(|c| *c != "cgroup")
            .collect();
        wanted.dedup();
        self.make(&h.mount, &dir, false)?;
        // each ancestor enables the controllers for its children, from the top down
        let mut up: Vec<&Path> = dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&h.mount))
            .collect();
        up.reverse();
        for a in up {
            let f = a.join("cgroup.subtree_control");
            let have = std::fs::read_to_string(&f).unwrap_or_default();
            for c in &wanted {
                if !have.split_whitespace().any(|x| x == *c) {
                    std::fs::write(&f, format!("+{c}")).with_context(|| {
                        format!("enable the {c} controller in `{}`", f.display())
                    })?;
                }
            }
        }
        for wr in &plan {
            write(&dir, wr)?;
        }
        join(&dir, pid)
    }

    /// `dir` and its missing parents below `mount`; a new cpuset cgroup gets its parent's
    /// cpus and mems (v1 leaves them empty, and an empty cpuset takes no task).
    fn make(&mut self, mount: &Path, dir: &Path, cpuset: bool) -> Result<()> {
        // a parent that another container's delete removes as this one makes its directory
        // (`/rbox` once empty) is made again
        for attempt in 0..5 {
            if self.make_once(mount, dir, cpuset, attempt < 4)? {
                break;
            }
        }
        self.dirs.push(dir.to_path_buf());
        Ok(())
    }

    /// One try of [`Placement::make`]: false when a parent went away meanwhile (and `again`).
    fn make_once(&mut self, mount: &Path, dir: &Path, cpuset: bool, again: bool) -> Result<bool> {
        let mut missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| a.starts_with(mount) && *a != mount && !a.exists())
            .collect();
        missing.reverse();
        for d in missing {
            match std::fs::create_dir(d) {
                Ok(()) => self.made.push(d.to_path_buf()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && again => return Ok(false),
                Err(e) => {
                    return Err(e).with_context(|| format!("create cgroup `{}`", d.display()))
                }
            }
            if cpuset {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let mine = d.join(f);
                    if std::fs::read_to_string(&mine)
                        .unwrap_or_default()
                        .trim()
                        .is_empty()
                    {
                        let parent = d.parent().unwrap_or(mount).join(f);
                        let v = std::fs::read_to_string(&parent).unwrap_or_default();
                        std::fs::write(&mine, v.trim())
                            .with_context(|| format!("write `{}`", mine.display()))?;
                    }
                }
            }
        }
        Ok(true)
    }

    /// Remove the container's directories, and the parents rbox made for them, deepest
    /// first; each waits (briefly) for the last of its processes to be gone.
    pub fn remove(&self) {
        let mut all: Vec<&PathBuf> = self.dirs.iter().chain(self.made.iter()).collect();
        all.sort();
        all.dedup();
        all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in all {
            match remove_dir(d) {
                Ok(()) => {}
                // a parent another container still uses
                Err(_) if !self.dirs.contains(d) => {}
                Err(e) => tracing::warn!("remove cgroup `{}`: {e}", d.display()),
            }
        }
    }

    /// New limits in the container's directories (`update`): each hierarchy its own files;
    /// v1 memory limits are tried again in the other order when the first refuses (a limit
    /// above the old memory+swap limit needs that one raised first).
    pub fn update(&self, r: &LinuxResources) -> Result<()> {
        let hs = hierarchies();
        for d in &self.dirs {
            let Some(h) = hs
                .iter()
                .filter(|h| d.starts_with(&h.mount))
                .max_by_key(|h| h.mount.components().count())
            else {
                continue;
            };
            if h.v2 {
                let v1_host = hs.iter().any(|x| !x.v2);
                if !v1_host {
                    for wr in v2_plan(r) {
                        write(d, &wr)?;
                    }
                }
                continue;
            }
            let plan: Vec<Write> = v1_plan(r)
                .into_iter()
                .filter(|wr| h.controllers.iter().any(|c| c == wr.controller))
                .collect();
            let (memory, rest): (Vec<Write>, Vec<Write>) =
                plan.into_iter().partition(|wr| wr.controller == "memory");
            if memory.iter().try_for_each(|wr| write(d, wr)).is_err() {
                memory.iter().rev().try_for_each(|wr| write(d, wr))?;
            }
            for wr in &rest {
                write(d, wr)?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` into the container's directories too.
    pub fn add(&self, pid: i32) -> Result<()> {
        self.dirs.iter().try_for_each(|d| join(d, pid))
    }

    /// The text kept in the container's state directory: one `dir` or `made` line each.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for d in &self.dirs {
            s.push_str(&format!("dir {}\n", d.display()));
        }
        for d in &self.made {
            s.push_str(&format!("made {}\n", d.display()));
        }
        s
    }

    /// [`Placement::to_text`] read back.
    pub fn from_text(s: &str) -> Placement {
        let mut p = Placement::default();
        for l in s.lines() {
            match l.split_once(' ') {
                Some(("dir", d)) => p.dirs.push(d.into()),
                Some(("made", d)) => p.made.push(d.into()),
                _ => {}
            }
        }
        p
    }
}

fn write(dir: &Path, wr: &Write) -> Result<()> {
    let p = dir.join(&wr.file);
    match std::fs::write(&p, &wr.value) {
        Ok(()) => Ok(()),
        Err(e) if OPTIONAL.contains(&wr.file.as_str()) => {
            tracing::debug!("write `{}` to `{}`: {e}", wr.value, p.display());
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("write `{}` to `{}`", wr.value, p.display())),
    }
}

fn join(dir: &Path, pid: i32) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string())
        .with_context(|| format!("move pid {pid} to `{}`", procs.display()))
}

/// rmdir, retried for a moment while the cgroup is busy: a killed process leaves its cgroup
/// shortly after its parent saw it die.
fn remove_dir(d: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_is_a_writable_subtree_with_the_controllers() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("user.slice/me");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        let text = "12:cpu:/x\n0::/user.slice/me\n";
        assert_eq!(
            delegated_in(root.path(), text, &["memory", "pids"]),
            Some(dir.clone())
        );
        // a controller not enabled for the children: not delegated for it
        assert_eq!(delegated_in(root.path(), text, &["cpuset"]), None);
        // cgroup v1 only (no unified entry), or a directory that is not there
        assert_eq!(delegated_in(root.path(), "12:cpu:/x\n", &[]), None);
        assert_eq!(delegated_in(root.path(), "0::/other\n", &[]), None);
    }

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/memory rw shared:14 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/systemd rw shared:16 - cgroup cgroup rw,xattr,name=systemd
36 99 0:29 / /mnt/again rw shared:14 - cgroup cgroup rw,memory
";

    #[test]
    fn hierarchies_from_mountinfo_with_our_place_in_each() {
        let own = "3:cpuacct,cpu:/\n2:memory:/job/7\n1:name=systemd:/\n0::/\n";
        let hs = hierarchies_in(HYBRID_MOUNTINFO, own);
        let got: Vec<(&str, Vec<&str>, bool, &str)> = hs
            .iter()
            .map(|h| {
                let c = h.controllers.iter().map(String::as_str).collect();
                (h.mount.to_str().unwrap(), c, h.v2, h.own.as_str())
            })
            .collect();
        // each hierarchy once (the memory one is mounted twice), the tmpfs not at all
        assert_eq!(
            got,
            [
                ("/sys/fs/cgroup/unified", vec![], true, "/"),
                ("/sys/fs/cgroup/memory", vec!["memory"], false, "/job/7"),
                (
                    "/sys/fs/cgroup/cpu,cpuacct",
                    vec!["cpu", "cpuacct"],
                    false,
                    "/"
                ),
                ("/sys/fs/cgroup/systemd", vec!["name=systemd"], false, "/"),
            ]
        );
        // absolute: from the hierarchy's root; relative: below our own cgroup
        assert_eq!(
            dir_in(&hs[1], "/c/x"),
            Path::new("/sys/fs/cgroup/memory/c/x")
        );
        assert_eq!(
            dir_in(&hs[1], "c/x"),
            Path::new("/sys/fs/cgroup/memory/job/7/c/x")
        );
    }

    fn resources(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn v1_plan_in_write_order() {
        let r = resources(serde_json::json!({
            "memory": {"limit": 100, "swap": 200, "swappiness": 10, "disableOOMKiller": true},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 9}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 3}]},
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "b", "major": 8, "minor": -1, "access": "r"}
            ]
        }));
        let got: Vec<String> = v1_plan(&r)
            .iter()
            .map(|w| format!("{} {}={}", w.controller, w.file, w.value))
            .collect();
        let mut want = vec![
            "memory memory.limit_in_bytes=100",
            "memory memory.memsw.limit_in_bytes=200",
            "memory memory.swappiness=10",
            "memory memory.oom_control=1",
            "cpu cpu.shares=512",
            "cpu cpu.cfs_period_us=100000",
            "cpu cpu.cfs_quota_us=50000",
            "cpuset cpuset.cpus=0",
            "pids pids.max=max",
            "blkio blkio.weight=500",
            "blkio blkio.throttle.read_bps_device=8:0 9",
            "hugetlb hugetlb.2MB.limit_in_bytes=4194304",
            "net_cls net_cls.classid=7",
            "net_prio net_prio.ifpriomap=eth0 3",
            "devices devices.deny=a",
            "devices devices.allow=b 8:* r",
        ];
        let defaults: Vec<String> = DEFAULT_DEVICES
            .iter()
            .map(|d| format!("devices devices.allow={d}"))
            .collect();
        want.extend(defaults.iter().map(String::as_str));
        assert_eq!(got, want);
        // device rules alone are no limits; without rules the devices cgroup is left alone
        assert!(!asks_limits(&resources(serde_json::json!({"devices": []}))));
        assert!(v1_plan(&resources(serde_json::json!({"devices": []}))).is_empty());
    }

    #[test]
    fn v2_plan_converts_v1_values() {
        let r = resources(serde_json::json!({
            "memory": {"limit": 100, "swap": 300, "reservation": 50},
            "cpu": {"shares": 1024, "quota": -1},
            "pids": {"limit": 50}
        }));
        let got: Vec<(String, String)> =
            v2_plan(&r).into_iter().map(|w| (w.file, w.value)).collect();
        let want = [
            ("memory.max", "100"),
            ("memory.low", "50"),
            ("memory.swap.max", "200"),
            ("cpu.weight", "39"),
            ("cpu.max", "max 100000"),
            ("pids.max", "50"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(v2_needed(&r), ["memory", "cpu", "pids"]);
    }

    #[test]
    fn run_flags_as_oci_resources() {
        let r = Resources {
            memory: Some(64 << 20),
            nano_cpus: Some(1_500_000_000),
            pids_limit: Some(50),
            ..Default::default()
        };
        let got: Vec<String> = v1_plan(&to_oci(&r))
            .into_iter()
            .map(|w| format!("{}={}", w.file, w.value))
            .collect();
        assert_eq!(
            got,
            [
                format!("memory.limit_in_bytes={}", 64 << 20),
                "cpu.cfs_period_us=100000".into(),
                "cpu.cfs_quota_us=150000".into(),
                "pids.max=50".into(),
            ]
        );
    }

    #[test]
    fn placement_writes_each_hierarchy_its_own_limits() {
        let root = tempfile::tempdir().unwrap();
        let h = |name: &str, own: &str| {
            let mount = root.path().join(name);
            // our own cgroup exists already
            std::fs::create_dir_all(mount.join(own.trim_start_matches('/'))).unwrap();
            Hierarchy {
                mount,
                controllers: vec![name.to_string()],
                v2: false,
                own: own.into(),
            }
        };
        let hs = [h("memory", "/job"), h("pids", "/")];
        let r = resources(serde_json::json!({"memory": {"limit": 100}, "pids": {"limit": 5}}));
        let mut p = Placement::default();
        p.create_in(&hs, "c/x", &r, 42).unwrap();
        let read = |rel: &str| std::fs::read_to_string(root.path().join(rel)).unwrap();
        assert_eq!(read("memory/job/c/x/memory.limit_in_bytes"), "100");
        assert_eq!(read("memory/job/c/x/cgroup.procs"), "42");
        assert_eq!(read("pids/c/x/pids.max"), "5");
        assert!(!root.path().join("pids/c/x/memory.limit_in_bytes").exists());
        assert_eq!(
            p.dirs,
            [
                root.path().join("memory/job/c/x"),
                root.path().join("pids/c/x")
            ]
        );
        assert_eq!(p.made.len(), 4);
        // a limit whose controller no hierarchy has: an error before anything is made
        let r = resources(serde_json::json!({"network": {"classID": 1}}));
        let mut p = Placement::default();
        let e = p.create_in(&hs, "/n", &r, 42).unwrap_err();
        assert_eq!(
            e.to_string(),
            "apply `net_cls.classid`: the cgroup controller `net_cls` is not mounted on this host"
        );
        assert!(p.made.is_empty() && !root.path().join("memory/n").exists());
    }

    #[test]
    fn placement_text_round_trips() {
        let p = Placement {
            dirs: vec!["/sys/fs/cgroup/pids/a/b".into()],
            made: vec![
                "/sys/fs/cgroup/pids/a".into(),
                "/sys/fs/cgroup/pids/a/b".into(),
            ],
        };
        assert_eq!(Placement::from_text(&p.to_text()), p);
    }

    #[test]
    fn limits_as_cgroup_v2_files() {
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            nano_cpus: Some(1_500_000_000),
            cpu_shares: Some(1024),
            pids_limit: Some(100),
            ..Default::default()
        };
        assert_eq!(
            limits(&r),
            [
                ("memory.max", (64u64 << 20).to_string()),
                ("memory.swap.max", (64u64 << 20).to_string()),
                ("cpu.max", "150000 100000".to_string()),
                ("cpu.weight", "39".to_string()),
                ("pids.max", "100".to_string()),
            ]
        );
        assert_eq!(needed(&r), ["memory", "cpu", "pids"]);
    }

    #[test]
    fn cgroup_conf_files_after_the_flags() {
        let r = Resources {
            pids_limit: Some(100),
            cgroup_conf: [("memory.high", "1000"), ("cgroup.max.depth", "2")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            ..Default::default()
        };
        // the controllers a delegated subtree must enable: not for cgroup.* files
        assert_eq!(needed(&r), ["pids", "memory"]);
        let plan: Vec<String> = v2_plan(&to_oci(&r))
            .iter()
            .map(|w| format!("{} {}", w.file, w.value))
            .collect();
        assert_eq!(
            plan,
            ["pids.max 100", "cgroup.max.depth 2", "memory.high 1000"]
        );
        assert_eq!(v2_needed(&to_oci(&r)), ["pids", "memory"]);
    }

    #[test]
    fn device_limits_as_v1_and_v2_files() {
        use crate::state::{DeviceLimit, DeviceLimitKind as K};
        let d = |kind, value| DeviceLimit {
            kind,
            major: 7,
            minor: 1,
            value,
        };
        let r = Resources {
            device_limits: vec![
                d(K::ReadBps, 1 << 20),
                d(K::WriteIops, 200),
                d(K::Weight, 300),
            ],
            ..Default::default()
        };
        assert_eq!(
            limits(&r),
            [
                ("io.max", "7:1 rbps=1048576".to_string()),
                ("io.max", "7:1 wiops=200".to_string()),
                ("io.bfq.weight", "7:1 300".to_string()),
            ]
        );
        assert_eq!(needed(&r), ["io"]);
        let got: Vec<String> = v1_plan(&to_oci(&r))
            .into_iter()
            .map(|w| format!("{}={}", w.file, w.value))
            .collect();
        assert_eq!(
            got,
            [
                "blkio.weight_device=7:1 300",
                "blkio.throttle.read_bps_device=7:1 1048576",
                "blkio.throttle.write_iops_device=7:1 200",
            ]
        );
    }
}
