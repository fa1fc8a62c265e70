//! Linux capabilities: names, Podman's default set, and the set a container keeps after
//! `--cap-add`, `--cap-drop` and `--privileged`. Applying them is in `process.rs`.

use anyhow::{bail, Result};

/// Capability names indexed by number (linux/capability.h).
pub const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Podman's default set (containers.conf `default_capabilities`).
pub const DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// A capability number from "NET_ADMIN", "CAP_NET_ADMIN" or "net_admin"; `None` for ALL.
pub fn parse(name: &str) -> Result<Option<u32>> {
    let up = name.to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    if bare == "ALL" {
        return Ok(None);
    }
    match NAMES.iter().position(|n| *n == bare) {
        Some(i) => Ok(Some(i as u32)),
        None => bail!("unknown capability `{name}`"),
    }
}

/// Whether two names (any spelling [`parse`] takes) are the same capability.
pub fn same(a: &str, b: &str) -> bool {
    matches!((parse(a), parse(b)), (Ok(x), Ok(y)) if x == y)
}

/// The adds and drops that turn [`DEFAULT`] into `set` (containers.conf's
/// `default_capabilities`, names [`parse`] takes), as `CAP_` names.
pub fn from_default(set: &[String]) -> (Vec<String>, Vec<String>) {
    let add = set
        .iter()
        .filter(|n| !DEFAULT.iter().any(|d| same(d, n)))
        .cloned()
        .collect();
    let drop = DEFAULT
        .iter()
        .filter(|d| !set.iter().any(|n| same(d, n)))
        .map(|d| format!("CAP_{d}"))
        .collect();
    (add, drop)
}

/// The highest capability the running kernel knows. A constant of the kernel, read once
/// per process: a run asks at create, at start and in the container's init, which inherits
/// the parent's answer (an atomic, safe to read after the clone; 0 means not read yet).
pub fn last_cap() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static LAST_PLUS_ONE: AtomicU32 = AtomicU32::new(0);
    match LAST_PLUS_ONE.load(Ordering::Relaxed) {
        0 => {
            let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(40);
            LAST_PLUS_ONE.store(last + 1, Ordering::Relaxed);
            last
        }
        n => n - 1,
    }
}

/// Every capability up to `last` ([`last_cap`]) as a bit mask.
pub fn mask_all(last: u32) -> u64 {
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// The kept set as a bit mask: default (or all when privileged), plus adds, minus drops.
/// Drops win over adds of the same capability, as in Podman; `ALL` works on both sides, and
/// a drop of `ALL` keeps the adds (Podman 4.3.1: `--cap-drop=all --cap-add=net_admin` keeps
/// CAP_NET_ADMIN only).
pub fn kept(add: &[String], drop: &[String], privileged: bool, last: u32) -> Result<u64> {
    let all = mask_all(last);
    let mut drop_all = false;
    for d in drop {
        drop_all |= parse(d)?.is_none();
    }
    let mut set: u64 = if drop_all {
        0
    } else if privileged {
        all
    } else {
        DEFAULT
            .iter()
            .map(|n| 1u64 << parse(n).expect("known").expect("one"))
            .sum()
    };
    for a in add {
        match parse(a)? {
            None => set = all,
            Some(c) => set |= 1 << c,
        }
    }
    for d in drop {
        if let Some(c) = parse(d)? {
            set &= !(1 << c);
        }
    }
    Ok(set & all)
}

/// The capabilities of a mask as `CAP_` names in alphabetical order, as Podman's inspect lists
/// them (a newer kernel's capabilities this table does not name are left out).
pub fn names(mask: u64) -> Vec<String> {
    let mut v: Vec<String> = NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| format!("CAP_{n}"))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_from_containers_conf() {
        let set = ["chown".to_string(), "CAP_NET_RAW".to_string()];
        let (add, drop) = from_default(&set);
        assert_eq!(add, ["CAP_NET_RAW"]);
        assert_eq!(drop.len(), DEFAULT.len() - 1);
        assert!(!drop.contains(&"CAP_CHOWN".to_string()));
        let kept = kept(&add, &drop, false, 40).unwrap();
        assert_eq!(kept, 1 << 0 | 1 << 13);
        assert!(same("net_raw", "CAP_NET_RAW") && !same("net_raw", "chown"));
    }

    #[test]
    fn parse_forms() {
        assert_eq!(parse("net_admin").unwrap(), Some(12));
        assert_eq!(parse("CAP_SYS_ADMIN").unwrap(), Some(21));
        assert_eq!(parse("all").unwrap(), None);
        assert!(parse("FLY").is_err());
    }

    #[test]
    fn default_add_drop() {
        let d = kept(&[], &[], false, 40).unwrap();
        assert_eq!(d.count_ones() as usize, DEFAULT.len());
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let k = kept(&s(&["NET_ADMIN"]), &s(&["CHOWN"]), false, 40).unwrap();
        assert!(k & (1 << 12) != 0 && k & 1 == 0);
        assert_eq!(kept(&[], &s(&["ALL"]), false, 40).unwrap(), 0);
        assert_eq!(
            kept(&s(&["NET_ADMIN"]), &s(&["ALL"]), false, 40).unwrap(),
            1 << 12
        );
        assert_eq!(
            kept(&s(&["ALL"]), &[], false, 40).unwrap(),
            (1u64 << 41) - 1
        );
        assert_eq!(
            kept(&[], &s(&["KILL"]), true, 40).unwrap(),
            ((1u64 << 41) - 1) & !(1 << 5)
        );
    }

    #[test]
    fn names_sorted_as_podman_lists_them() {
        let d = kept(&[], &[], false, 40).unwrap();
        let want: Vec<String> = DEFAULT.iter().map(|n| format!("CAP_{n}")).collect();
        assert_eq!(names(d), want);
        assert_eq!(
            names((1 << 21) | (1 << 12)),
            ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
        );
    }
}
