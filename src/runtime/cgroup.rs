//! Cgroup v2 resource limits (`--memory`, `--cpus`, `--pids-limit`, ...): where a cgroup v2
//! subtree is delegated to the user (a writable directory of their own whose
//! `cgroup.subtree_control` enables the controllers), a child cgroup per container gets the
//! limits and the init. Elsewhere (cgroup v1, or no delegation, as on hosts without systemd)
//! the limits are recorded only, with one warning, as Podman's `--cgroups=disabled`. Owns no
//! other cgroup handling: the container's /sys/fs/cgroup mount is in `oci`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::state::Resources;

/// The controllers the limits in `r` need.
pub fn needed(r: &Resources) -> Vec<&'static str> {
    let mut v = Vec::new();
    if r.memory.is_some() || r.memory_swap.is_some() || r.memory_reservation.is_some() {
        v.push("memory");
    }
    if r.nano_cpus.is_some() || r.cpu_shares.is_some() {
        v.push("cpu");
    }
    if r.cpuset_cpus.is_some() {
        v.push("cpuset");
    }
    if r.pids_limit.is_some() {
        v.push("pids");
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
    }
    if let Some(s) = r.cpu_shares {
        // the shares-to-weight conversion of the OCI runtimes (2..262144 -> 1..10000)
        let s = s.clamp(2, 262_144);
        v.push(("cpu.weight", (1 + ((s - 2) * 9999) / 262_142).to_string()));
    }
    if let Some(c) = &r.cpuset_cpus {
        v.push(("cpuset.cpus", c.clone()));
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
    for (file, value) in limits(r) {
        let p = cg.join(file);
        std::fs::write(&p, &value)
            .with_context(|| format!("write `{value}` to `{}`", p.display()))?;
    }
    let procs = cg.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string())
        .with_context(|| format!("move pid {pid} to `{}`", procs.display()))
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
}
